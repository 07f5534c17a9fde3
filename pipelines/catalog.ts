import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { validatePipeline } from './define';
import fashionMnist from './fashion-mnist';
import type { PipelineSpec } from './spec';

/** Pipelines that ship with Gantry, runnable by name. */
export const BUILT_IN_PIPELINES: Record<string, PipelineSpec> = {
  'fashion-mnist': fashionMnist,
};

/**
 * A pipeline by built-in name, or from a file: `.json`, or a module whose default export is a
 * spec (usually `definePipeline(...)`).
 */
export async function loadPipeline(nameOrPath: string): Promise<PipelineSpec> {
  const builtIn = BUILT_IN_PIPELINES[nameOrPath];
  if (builtIn) return builtIn;
  const file = path.resolve(nameOrPath);
  const exists = await stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!exists) {
    throw new Error(
      `unknown pipeline "${nameOrPath}": not a built-in (${Object.keys(BUILT_IN_PIPELINES).join(', ')}) nor a file`,
    );
  }
  if (file.endsWith('.json')) return validatePipeline(JSON.parse(await readFile(file, 'utf8')));
  const module = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (module.default === undefined)
    throw new Error(`${file}: has no default export (export default definePipeline({...}))`);
  return validatePipeline(module.default);
}
