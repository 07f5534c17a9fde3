import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { validatePipeline } from './define';
import fashionMnist from './fashion-mnist';
import { projectPipeline, projectPipelineNames } from './registry';
import type { PipelineSpec } from './spec';

/** Pipelines that ship with Gantry, runnable by name. */
export const BUILT_IN_PIPELINES: Record<string, PipelineSpec> = {
  'fashion-mnist': fashionMnist,
};

/**
 * A pipeline by name — the loaded project's first, then the built-ins — or from a file: `.json`, or a module whose
 * default export is a spec (usually `definePipeline(...)`).
 */
export async function loadPipeline(nameOrPath: string): Promise<PipelineSpec> {
  const own = projectPipeline(nameOrPath);
  if (own) return own;
  const builtIn = Object.hasOwn(BUILT_IN_PIPELINES, nameOrPath) ? BUILT_IN_PIPELINES[nameOrPath] : undefined;
  if (builtIn) return builtIn;
  const file = path.resolve(nameOrPath);
  const exists = await stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!exists) {
    const own = projectPipelineNames();
    throw new Error(
      `unknown pipeline "${nameOrPath}": not ${own.length > 0 ? `one of the project's (${own.join(', ')}), ` : ''}` +
        `a built-in (${Object.keys(BUILT_IN_PIPELINES).join(', ')}) nor a file`,
    );
  }
  if (file.endsWith('.json')) return validatePipeline(JSON.parse(await readFile(file, 'utf8')));
  const module = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (module.default === undefined)
    throw new Error(`${file}: has no default export (export default definePipeline({...}))`);
  return validatePipeline(module.default);
}
