import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { registerDataSource } from '../data/sources';
import { registerArchitecture, type Architecture } from '../training/architectures';
import { describeIssues } from '../validation/issues';
import { deferringRegistryNames, PipelineSpecError, validateSubmission } from './define';
import type { ProjectDefinition } from './project';
import { registerPipeline, registerStep } from './registry';
import type { PipelineSpec } from './spec';

/**
 * A user's project file (`gantry.config.ts`, `export default defineProject({...})`): found, imported (the CLI and
 * the workers run under tsx, so a .ts file imports as it is), checked, and its definitions registered, so that
 * specs naming them validate and workers run their code.
 */
export const PROJECT_FILE_NAME = 'gantry.config.ts';

export interface LoadedProject {
  file: string;
  /** The folder of the project file: relative paths in it (data, workflows) start here. */
  dir: string;
  definition: ProjectDefinition;
  pipelines: PipelineSpec[];
  /** Absolute path of the project's own workflows module, if it has one. */
  workflowsPath: string | null;
}

export class ProjectError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ProjectError';
  }
}

/**
 * The project file to load: `explicit` (--project), else GANTRY_PROJECT, else the first gantry.config.ts from
 * `cwd` upward; null when there is none (Gantry's own pipelines still run).
 */
export function findProjectFile(
  options: { explicit?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): string | null {
  const { env = process.env, cwd = process.cwd() } = options;
  const named = options.explicit ?? (env.GANTRY_PROJECT || undefined);
  if (named !== undefined) {
    const file = path.resolve(cwd, named);
    const stat = existsSync(file) ? statSync(file) : undefined;
    // A folder names the project file inside it.
    const resolved = stat?.isDirectory() ? path.join(file, PROJECT_FILE_NAME) : file;
    if (!existsSync(resolved)) throw new ProjectError(resolved, 'project file not found');
    return resolved;
  }
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, PROJECT_FILE_NAME);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return null;
  }
}

const named = z.object({ name: z.string().min(1) }).loose();
const fn = z.custom<(...args: never[]) => unknown>((value) => typeof value === 'function', 'must be a function');
const ProjectShape = z
  .object({
    name: z.string().min(1),
    dataSources: z.array(named.extend({ stream: fn })),
    architectures: z.array(named.extend({ build: fn, options: z.custom((v) => v instanceof Object, 'a zod schema') })),
    steps: z.array(named.extend({ run: fn, pool: z.string().min(1) })),
    pipelines: z.array(z.unknown()),
    workflows: z.string().min(1).optional(),
  })
  .loose();

const loaded = new Map<string, Promise<LoadedProject>>();

/**
 * An absolute path as an import specifier: as it is on POSIX (so a test runner's module graph sees the same module
 * it would for a path), as a file URL on Windows.
 */
function importable(file: string): string {
  return process.platform === 'win32' ? pathToFileURL(file).href : file;
}

/** Imports and registers a project file once per process (the CLI, a worker). */
export function loadProject(file: string): Promise<LoadedProject> {
  const absolute = path.resolve(file);
  let project = loaded.get(absolute);
  if (!project) {
    project = importProject(absolute);
    loaded.set(absolute, project);
  }
  return project;
}

async function importProject(file: string): Promise<LoadedProject> {
  let module: { default?: unknown };
  try {
    // Its pipelines may name what it registers below, by name: definePipeline leaves those names to the check here.
    module = await deferringRegistryNames(() => import(importable(file)) as Promise<{ default?: unknown }>);
  } catch (error) {
    throw new ProjectError(file, `cannot be loaded: ${(error as Error).message}`);
  }
  const exported = module.default;
  if (exported === undefined)
    throw new ProjectError(file, 'has no default export (export default defineProject({...}))');
  const checked = ProjectShape.safeParse(exported);
  if (!checked.success) throw new ProjectError(file, `not a project: ${describeIssues(checked.error)}`);
  const definition = exported as ProjectDefinition;
  const dir = path.dirname(file);
  try {
    for (const source of definition.dataSources) registerDataSource(source);
    for (const architecture of definition.architectures)
      registerArchitecture(architecture.name, architecture as unknown as Architecture);
    for (const step of definition.steps) registerStep(step);
  } catch (error) {
    throw new ProjectError(file, (error as Error).message);
  }
  // Pipelines last: they name the definitions above.
  const pipelines = definition.pipelines.map((spec, i) => {
    try {
      const valid = validateSubmission(spec);
      registerPipeline(valid);
      return valid;
    } catch (error) {
      const name = (spec as { name?: unknown })?.name;
      const what = typeof name === 'string' ? `pipeline "${name}"` : `pipelines[${i}]`;
      if (error instanceof PipelineSpecError) throw new ProjectError(file, `${what}: ${error.message}`);
      throw new ProjectError(file, `${what}: ${(error as Error).message}`);
    }
  });
  let workflowsPath: string | null = null;
  if (definition.workflows !== undefined) {
    workflowsPath = path.resolve(dir, definition.workflows);
    const candidates = [workflowsPath, `${workflowsPath}.ts`];
    const found = candidates.find((candidate) => existsSync(candidate) && statSync(candidate).isFile());
    if (!found) throw new ProjectError(file, `workflows: ${workflowsPath} not found`);
    workflowsPath = found;
  }
  return { file, dir, definition, pipelines, workflowsPath };
}

/**
 * Finds and loads the project for this process, and records it in the environment (GANTRY_PROJECT) so that the
 * children it starts (workers, the model server) load the same one and share its GANTRY_HOME.
 */
export async function activateProject(
  options: { explicit?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<LoadedProject | null> {
  const env = options.env ?? process.env;
  const file = findProjectFile({ ...options, env });
  if (!file) return null;
  env.GANTRY_PROJECT = file;
  return loadProject(file);
}

/**
 * The workflow types a project's workflows module exports (its exported functions), for `gantry run <workflow>`.
 * Imported outside the workflow sandbox only to read the names: nothing in it runs.
 */
export async function projectWorkflowNames(project: LoadedProject | null): Promise<string[]> {
  if (!project?.workflowsPath) return [];
  const module = (await import(importable(project.workflowsPath))) as Record<string, unknown>;
  return Object.keys(module)
    .filter((name) => typeof module[name] === 'function')
    .sort();
}
