import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type BundleOptions, type WorkerOptions } from '@temporalio/worker';
import {
  createControlActivities,
  createPredictActivities,
  createTrainActivities,
  type ActivityDeps,
} from '../activities';
import { FileArtifactStore } from '../artifacts/store';
import { connectClient, connectWorker } from '../control/connect';
import type { GantryHome } from '../control/home';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { taskQueueOf, type Pool } from '../control/task-queues';
import type { TemporalTarget } from '../control/temporal-env';
import type { LoadedProject } from '../pipelines/load-project';
import { projectWorkflowsEntry, stepActivitiesFor } from './project';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** The node_modules folder Gantry's own @temporalio/workflow is in. */
const WORKFLOW_SDK_MODULES = path.resolve(
  path.dirname(createRequire(import.meta.url).resolve('@temporalio/workflow/package.json')),
  '..',
  '..',
);

/**
 * The SDK's bundler compiles TypeScript outside node_modules only; Gantry installed as a project's dependency is
 * TypeScript inside node_modules, so its own folder is let through (every other package there ships JavaScript).
 * The bundle's generated entry (next to a project's workflows entry, under GANTRY_HOME) resolves the SDK from
 * wherever that is, so Gantry's node_modules is a fallback for module resolution.
 */
export function compileGantryTypeScript(config: WebpackConfiguration): WebpackConfiguration {
  const gantryRoot = `${PROJECT_ROOT}${path.sep}`;
  for (const rule of config.module?.rules ?? []) {
    if (rule && typeof rule === 'object' && String(rule.test) === String(/\.ts$/)) {
      rule.exclude = (file: string) => /node_modules/.test(file) && !file.startsWith(gantryRoot);
    }
  }
  config.resolve = {
    ...config.resolve,
    modules: [...(config.resolve?.modules ?? ['node_modules']), WORKFLOW_SDK_MODULES],
  };
  return config;
}

/** The commit of the code that runs: the user's project's when there is one, else Gantry's. */
function gitCommit(project: LoadedProject | null): string | null {
  if (process.env.GANTRY_GIT_COMMIT) return process.env.GANTRY_GIT_COMMIT;
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: project?.dir ?? PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
  } catch {
    return null;
  }
}

/** Concurrent training activities on one train worker: one per device (one CPU device here). */
function trainSlots(): number {
  const value = Number(process.env.GANTRY_TRAIN_SLOTS ?? '1');
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`GANTRY_TRAIN_SLOTS must be a positive integer, got "${process.env.GANTRY_TRAIN_SLOTS}"`);
  return value;
}

type WebpackConfiguration = Parameters<NonNullable<BundleOptions['webpackConfigHook']>>[0];

export interface PoolWorker {
  worker: Worker;
  taskQueue: string;
  close(): Promise<void>;
}

/**
 * One worker of one pool. The control pool runs the workflows and the light activities; the
 * train pool runs only training, with one slot per device; a pool a project's steps name runs
 * only those steps. Each also runs the project's steps placed on its pool. More capacity = more
 * of these processes, on any host, polling the same task queue.
 */
export async function createPoolWorker(
  pool: string,
  target: TemporalTarget,
  home: GantryHome,
  project: LoadedProject | null = null,
): Promise<PoolWorker> {
  const nativeConnection = await connectWorker(target);
  const { client, connection: clientConnection } = await connectClient(target);
  const deps: ActivityDeps = {
    client,
    store: new FileArtifactStore(home.artifactsDir),
    home,
    gitCommit: gitCommit(project),
  };
  const taskQueue = taskQueueOf(pool as Pool);
  const steps = await stepActivitiesFor(pool, project, deps);
  const common: Partial<WorkerOptions> = { connection: nativeConnection, namespace: target.namespace, taskQueue };
  const bundlePath = process.env.GANTRY_WORKFLOW_BUNDLE;
  const options: WorkerOptions =
    pool === 'control'
      ? {
          ...common,
          taskQueue,
          activities: { ...createControlActivities(deps), ...steps },
          // A prebuilt bundle (tests, containers) skips the seconds webpack takes at start-up.
          ...(bundlePath
            ? { workflowBundle: { codePath: bundlePath } }
            : {
                bundlerOptions: { webpackConfigHook: compileGantryTypeScript },
                workflowsPath: project?.workflowsPath
                  ? await projectWorkflowsEntry(WORKFLOWS_PATH, project, home)
                  : WORKFLOWS_PATH,
              }),
        }
      : pool === 'predict'
        ? {
            ...common,
            taskQueue,
            // Batch prediction's shards (gantry predict --pool predict), one at a time like training's slots.
            activities: { ...createPredictActivities(), ...steps },
            maxConcurrentActivityTaskExecutions: trainSlots(),
            maxHeartbeatThrottleInterval: '2s',
          }
        : pool !== 'train'
          ? { ...common, taskQueue, activities: steps, maxHeartbeatThrottleInterval: '2s' }
          : {
              ...common,
              taskQueue,
              activities: { ...createTrainActivities(deps), ...steps },
              maxConcurrentActivityTaskExecutions: trainSlots(),
              // Heartbeats carry progress and bring back cancellation: send them every few seconds
              // rather than the SDK's default of 80% of the heartbeat timeout.
              maxHeartbeatThrottleInterval: '2s',
            };
  const worker = await Worker.create(options);
  return {
    worker,
    taskQueue,
    async close() {
      await clientConnection.close();
      await nativeConnection.close();
    },
  };
}
