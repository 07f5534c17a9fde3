import { startLocalStack, type LocalStack } from '../../control/dev-stack';
import { gantryHome, type GantryHome } from '../../control/home';
import { taskQueueOf, type Pool } from '../../control/task-queues';
import { activateProject } from '../../pipelines/load-project';
import { customPools } from '../../workers/project';
import { startHomeDashboard } from '../../ui/start';
import { UsageError } from '../errors';

export function describeStack(home: GantryHome, stack: LocalStack, dashboard?: { url: string } | null): string {
  const server = stack.server;
  return [
    `dashboard        ${dashboard ? dashboard.url : 'not started (gantry ui)'}`,
    `state folder     ${home.root}`,
    `temporal         ${stack.target.address} (namespace ${stack.target.namespace}; ${
      server ? `embedded, pid ${server.pid}, ${server.binaryOrigin}: ${server.binary}` : 'TEMPORAL_ADDRESS'
    })`,
    `web ui           ${server?.uiUrl ?? (server ? 'disabled (headless)' : 'see your cluster')}`,
    `temporal db      ${server ? server.database : '-'}`,
    `model server     ${describeModelServer(stack)}`,
    `model repository ${home.modelRepositoryDir}`,
    `artifact store   ${home.artifactsDir}`,
    `task queues      ${taskQueueOf('control')} (pid ${stack.workers.find((w) => w.pool === 'control')?.child.pid}), ` +
      `${taskQueueOf('train')} (${stack.workers
        .filter((w) => w.pool === 'train')
        .map((w) => `pid ${w.child.pid}`)
        .join(', ')})${stack.workers
        .filter((w) => w.pool !== 'control' && w.pool !== 'train')
        .map((w) => `, ${taskQueueOf(w.pool as Pool)} (pid ${w.child.pid})`)
        .join('')}`,
    `logs             ${home.logsDir}`,
  ].join('\n');
}

function describeModelServer(stack: LocalStack): string {
  const served = stack.modelServer;
  if (!served) return `${stack.servers.map((s) => s.url).join(', ')} (GANTRY_SERVERS; none started)`;
  return (
    `REST ${served.url}, gRPC 127.0.0.1:${served.grpcPort}, admin ${served.adminUrl} ` +
    `(gantry serve, pid ${served.child.pid}; admin token in ${served.adminTokenFile})`
  );
}

/** Waits for a signal to stop: the foreground life of `gantry dev`. */
function untilInterrupted(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

export async function devCommand(options: { port?: string; headless?: boolean; trainWorkers?: string }): Promise<void> {
  // Loaded by the CLI already (GANTRY_PROJECT): its steps' pools get a worker each, and every child loads it too.
  const project = await activateProject();
  const home = gantryHome();
  const port = options.port === undefined || options.port === 'auto' ? 'auto' : Number(options.port);
  const trainWorkers = Number(options.trainWorkers ?? '1');
  if (!Number.isInteger(trainWorkers) || trainWorkers < 1 || trainWorkers > 64)
    throw new UsageError(`--train-workers: must be an integer from 1 to 64, got "${options.trainWorkers}"`);
  let gaveUp: ((error: Error) => void) | undefined;
  const givenUp = new Promise<Error>((resolve) => (gaveUp = resolve));
  const stack = await startLocalStack(home, {
    port,
    headless: options.headless,
    trainWorkers,
    extraPools: customPools(project),
    onExit: (e) =>
      console.error(
        `${e.what} exited (code ${e.code}, signal ${e.signal})` +
          `${e.restarted ? `; starting it again in ${(e.delayMs ?? 0) / 1000} s` : ''}; see ${e.logFile}`,
      ),
    onRestarted: (what, pid, restarts) =>
      console.error(`${what} is running again (pid ${pid}; restart ${restarts} since gantry dev started)`),
    onGiveUp: (_what, error) => gaveUp!(error),
  });
  // The dashboard reads the stack's Temporal server; a dashboard that cannot start leaves the stack up.
  const dashboard = await startHomeDashboard(home, {
    port: 'auto',
    target: stack.target,
    temporalUiUrl: stack.server?.uiUrl ?? null,
  }).catch((error: Error) => {
    console.error(`the dashboard did not start: ${error.message}`);
    return null;
  });
  const hint = project
    ? `In another terminal: npx gantry run ${project.pipelines[0]?.name ?? '<pipeline>'} --follow   ` +
      '(Ctrl-C here stops everything)'
    : 'In another terminal: bin/gantry run fashion-mnist --follow   (Ctrl-C here stops everything)\n' +
      '               then: bin/gantry load fashion-mnist --rps 50 --clients 20 --feedback   ' +
      '(traffic for the next rollout)';
  console.log(
    `gantry dev is up${project ? ` for project ${project.definition.name} (${project.file})` : ''}\n` +
      `${describeStack(home, stack, dashboard)}\n\n${hint}`,
  );
  const ended = await Promise.race([untilInterrupted(), givenUp]);
  if (ended instanceof Error) {
    // A child that cannot stay up: the stack is not what it says it is, so it stops rather than limps.
    console.error('a child keeps dying: stopping the workers, the model server and the Temporal server…');
    await dashboard?.close();
    await stack.stop();
    console.error('stopped');
    throw ended;
  }
  console.log(`\n${ended}: stopping the workers, the model server and the Temporal server…`);
  await dashboard?.close();
  await stack.stop();
  console.log('stopped');
}
