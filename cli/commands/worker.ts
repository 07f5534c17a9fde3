import { POOLS, type Pool } from '../../control/task-queues';
import { runPoolWorker } from '../../workers/main';
import { UsageError } from '../errors';

export async function workerCommand(options: { pool: string }): Promise<void> {
  if (!POOLS.includes(options.pool as Pool))
    throw new UsageError(`--pool: "${options.pool}" is not a pool; choose ${POOLS.join(' or ')}`);
  await runPoolWorker(options.pool as Pool);
}
