import { gantryHome } from '../control/home';
import { resolveTemporalTarget } from '../control/connect';
import { createPoolWorker } from './pool-worker';
import { customPools, workerProject } from './project';

/**
 * `gantry worker --pool <pool>` and `tsx workers/main.ts <pool>`: runs one pool's worker until
 * SIGINT/SIGTERM, then drains (the SDK's graceful shutdown) and exits.
 */
export async function runPoolWorker(pool: string): Promise<void> {
  // The project first: it decides GANTRY_HOME's default and which steps this pool runs.
  const project = await workerProject();
  // `predict` runs batch prediction's shards (gantry predict --pool predict); a project's own pool may share the name.
  const pools = [...new Set(['control', 'train', ...customPools(project), 'predict'])];
  if (!pools.includes(pool)) throw new Error(`"${pool}" is not a pool; choose ${pools.join(', ')}`);
  // Relative paths in the project's specs (data.path) are from the project folder, wherever the worker started.
  if (project) process.chdir(project.dir);
  const home = gantryHome();
  const target = await resolveTemporalTarget(home);
  const { worker, taskQueue, close } = await createPoolWorker(pool, target, home, project);
  console.log(
    `gantry ${pool} worker: task queue ${taskQueue} on ${target.address} (namespace ${target.namespace}), pid ` +
      `${process.pid}`,
  );
  try {
    await worker.run();
  } finally {
    await close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const pool = process.argv[2];
  if (!pool) {
    console.error('usage: workers/main.ts <control|train|a pool of the project>');
    process.exit(2);
  }
  runPoolWorker(pool).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
