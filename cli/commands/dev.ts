import { gantryHome, type GantryHome } from '../../control/home';
import { taskQueueOf } from '../../control/task-queues';
import { UsageError } from '../errors';
import { startLocalStack, type LocalStack } from '../stack';

export function describeStack(home: GantryHome, stack: LocalStack): string {
  const server = stack.server;
  return [
    `state folder     ${home.root}`,
    `temporal         ${stack.target.address} (namespace ${stack.target.namespace}; ${server ? `embedded, pid ${server.pid}, ${server.binaryOrigin}: ${server.binary}` : 'TEMPORAL_ADDRESS'})`,
    `web ui           ${server?.uiUrl ?? (server ? 'disabled (headless)' : 'see your cluster')}`,
    `temporal db      ${server ? server.database : '-'}`,
    `model repository ${home.modelRepositoryDir}`,
    `artifact store   ${home.artifactsDir}`,
    `task queues      ${taskQueueOf('control')} (pid ${stack.workers.find((w) => w.pool === 'control')?.child.pid}), ` +
      `${taskQueueOf('train')} (${stack.workers.filter((w) => w.pool === 'train').map((w) => `pid ${w.child.pid}`).join(', ')})`,
    `logs             ${home.logsDir}`,
  ].join('\n');
}

/** Waits for a signal to stop: the foreground life of `gantry dev`. */
function untilInterrupted(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

export async function devCommand(options: { port?: string; headless?: boolean; trainWorkers?: string }): Promise<void> {
  const home = gantryHome();
  const port = options.port === undefined || options.port === 'auto' ? 'auto' : Number(options.port);
  const trainWorkers = Number(options.trainWorkers ?? '1');
  if (!Number.isInteger(trainWorkers) || trainWorkers < 1 || trainWorkers > 64) throw new UsageError(`--train-workers: must be an integer from 1 to 64, got "${options.trainWorkers}"`);
  const stack = await startLocalStack(home, { port, headless: options.headless, trainWorkers });
  console.log(`gantry dev is up\n${describeStack(home, stack)}\n\nIn another terminal: bin/gantry run fashion-mnist --follow   (Ctrl-C here stops everything)`);
  for (const { pool, child, logFile } of stack.workers) {
    child.once('exit', (code, signal) => {
      if (code !== 0 || signal) console.error(`the ${pool} worker exited (code ${code}, signal ${signal}); see ${logFile}`);
    });
  }
  const signal = await untilInterrupted();
  console.log(`\n${signal}: stopping workers and the Temporal server…`);
  await stack.stop();
  console.log('stopped');
}
