import { runPoolWorker } from '../../workers/main';
import { UsageError } from '../errors';

export async function workerCommand(options: { pool: string }): Promise<void> {
  // The pools are control, train, predict and those the project's steps name: runPoolWorker knows them once it has
  // loaded the project, and refuses any other with the list.
  await runPoolWorker(options.pool).catch((error: Error) => {
    if (/is not a pool/.test(error.message)) throw new UsageError(`--pool: ${error.message}`);
    throw error;
  });
}
