import { gantryHome } from '../control/home';
import { resolveTemporalTarget } from '../control/connect';
import { POOLS, type Pool } from '../control/task-queues';
import { createPoolWorker } from './pool-worker';

/**
 * `gantry worker --pool <pool>` and `tsx workers/main.ts <pool>`: runs one pool's worker until
 * SIGINT/SIGTERM, then drains (the SDK's graceful shutdown) and exits.
 */
export async function runPoolWorker(pool: Pool): Promise<void> {
  const home = gantryHome();
  const target = await resolveTemporalTarget(home);
  const { worker, taskQueue, close } = await createPoolWorker(pool, target, home);
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
  const pool = process.argv[2] as Pool;
  if (!POOLS.includes(pool)) {
    console.error(`usage: workers/main.ts <${POOLS.join('|')}>`);
    process.exit(2);
  }
  runPoolWorker(pool).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
