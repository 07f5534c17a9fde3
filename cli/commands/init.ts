import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { UsageError } from '../errors';
import {
  GITIGNORE,
  packageJson,
  penguinsCsv,
  pipelineFile,
  projectFile,
  readme,
  testFile,
  TSCONFIG,
  type TemplateInput,
} from '../init-templates';

/** A package folder as Node would find it from Gantry's own folder (itself, or hoisted next to it). */
function packageDir(name: string): string {
  for (let dir = PROJECT_ROOT; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`cannot find the package ${name} from ${PROJECT_ROOT}`);
  }
}

/** The versions Gantry itself is built and tested with: the generated project pins the same. */
async function gantryVersions(): Promise<Record<string, string>> {
  const manifest = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  return { ...manifest.devDependencies, ...manifest.dependencies };
}

/** A folder name as a pipeline name: lower case, a-z 0-9 - _, starting with a letter or digit. */
function identifierOf(text: string): string {
  const name = text
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return name || 'my-pipeline';
}

/**
 * `gantry init <dir>`: a project depending on this Gantry by path (installs offline), with its project file, one
 * pipeline on the penguins CSV it writes, a test, a tsconfig and a README.
 */
export async function initCommand(dir: string, options: { name?: string; force?: boolean }): Promise<void> {
  const target = path.resolve(dir);
  const name = options.name ?? identifierOf(path.basename(target));
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name))
    throw new UsageError(`--name: "${name}" must be 1-63 characters of a-z, 0-9, "-" or "_"`);
  if (existsSync(target) && (await readdir(target)).length > 0 && !options.force)
    throw new UsageError(`${target} is not empty (--force writes into it, replacing the files gantry init writes)`);
  const versions = await gantryVersions();
  const input: TemplateInput = {
    name,
    gantryDependency: `file:${PROJECT_ROOT}`,
    versions: {
      typescript: versions.typescript ?? '5.9.3',
      tsx: versions.tsx ?? '4.23.15',
      zod: versions.zod ?? '4.6.7',
      typesNode: versions['@types/node'] ?? '20.19.43',
    },
  };
  // The penguins rows ship with vega-datasets, a dependency of Gantry (its `exports` block the file: read it).
  const penguinsFile = path.join(packageDir('vega-datasets'), 'data', 'penguins.json');
  const rows = JSON.parse(await readFile(penguinsFile, 'utf8')) as Record<string, unknown>[];
  const files: Record<string, string> = {
    'package.json': packageJson(input),
    'tsconfig.json': TSCONFIG,
    'gantry.config.ts': projectFile(input),
    [`pipelines/${name}.ts`]: pipelineFile(input),
    'data/penguins.csv': penguinsCsv(rows),
    'test/project.test.ts': testFile(input),
    'README.md': readme(input),
    '.gitignore': GITIGNORE,
  };
  for (const [file, text] of Object.entries(files)) {
    const where = path.join(target, file);
    await mkdir(path.dirname(where), { recursive: true });
    await writeFile(where, text);
  }
  console.log(
    `created the project ${name} in ${target}\n\n` +
      `  cd ${dir}\n  npm install\n  npm test\n  npx gantry dev\n` +
      `  npx gantry run ${name} --follow    (in another terminal)`,
  );
}
