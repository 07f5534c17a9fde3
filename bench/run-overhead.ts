/**
 * The fixed cost of a run (issue 19, item 5), in one run on one Temporal dev server: the floor (a bare workflow of
 * five no-op activities) beside real retrain runs of Fashion-MNIST on 1,000 images for 1 epoch, no canary, with
 * their per-stage timings. The first real run pays the worker's cold start (TensorFlow's kernels, the first graph);
 * the next ones are what a long-lived worker pays for every small retrain or tuning trial.
 *
 *   npx tsx bench/run-overhead.ts [--runs 3] [--floor 5]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { resolveSpec, startRun } from '../cli/runs';
import { stageTimingLine } from '../cli/timings';
import { startEmbeddedTemporal } from '../control/embedded-temporal';
import { gantryHome } from '../control/home';
import { createPoolWorker, WORKFLOWS_PATH } from '../workers/pool-worker';
import { completedRun } from '../workflows/api';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, floor: { type: 'string', default: '5' } },
});
const runs = Number(values.runs);
const floorRuns = Number(values.floor);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) };

Runtime.install({ logger: new DefaultLogger('WARN') });
const root = await mkdtemp(path.join(os.tmpdir(), 'gantry-overhead-'));
const home = gantryHome({ GANTRY_HOME: root });
const server = await startEmbeddedTemporal(home, { port: 'free', headless: true });
const stops: (() => Promise<void>)[] = [];
try {
  const bundlePath = path.join(root, 'workflow-bundle.js');
  await writeFile(bundlePath, (await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quiet })).code);
  Object.assign(process.env, {
    GANTRY_HOME: root,
    TEMPORAL_ADDRESS: server.address,
    TEMPORAL_NAMESPACE: 'default',
    GANTRY_TASK_QUEUE_PREFIX: 'overhead',
    GANTRY_WORKFLOW_BUNDLE: bundlePath,
  });
  const target = { address: server.address, namespace: 'default' };
  const connection = await Connection.connect({ address: server.address });
  stops.push(() => connection.close());
  const client = new Client({ connection, namespace: 'default' });

  // The floor: its own worker and queue on the same server, the SDK's defaults.
  const floorWorker = await Worker.create({
    connection: await (await import('@temporalio/worker')).NativeConnection.connect({ address: server.address }),
    taskQueue: 'overhead-floor',
    workflowBundle: await bundleWorkflowCode({
      workflowsPath: path.join(HERE, 'run-overhead-workflow.ts'),
      logger: quiet,
    }),
    activities: { noop: async (stage: string) => stage },
  });
  const floorRunning = floorWorker.run();
  stops.push(async () => {
    floorWorker.shutdown();
    await floorRunning;
  });
  const floor: number[] = [];
  for (let i = 0; i < floorRuns + 1; i++) {
    const started = performance.now();
    await client.workflow.execute('bareWorkflow', { taskQueue: 'overhead-floor', workflowId: `floor-${i}` });
    // The first pays the worker's first poll and the bundle's load.
    if (i > 0) floor.push(performance.now() - started);
  }

  const workers = [await createPoolWorker('control', target, home), await createPoolWorker('train', target, home)];
  const running = workers.map((w) => w.worker.run());
  stops.push(async () => {
    for (const w of workers) w.worker.shutdown();
    await Promise.allSettled(running);
    await Promise.all(workers.map((w) => w.close()));
  });
  const spec = await resolveSpec('fashion-mnist', [
    'data.limits.train=1000',
    'data.limits.test=300',
    'train.epochs=1',
    'evaluation.minAccuracy=0.3',
    'deployment.rollout.enabled=false',
  ]);
  const rows: { total: number; workflow: number; training: number }[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const result = completedRun(await (await startRun(client, spec)).result());
    const total = performance.now() - started;
    const timings = result.timings!;
    const training = timings.stages.find((s) => s.stage === 'train')?.parts?.epochs ?? Number.NaN;
    rows.push({ total, workflow: timings.totalMs, training });
    console.log(
      `run ${i + 1}${i === 0 ? ' (cold worker)' : ''}: ${(total / 1000).toFixed(2)} s ` +
        `(workflow ${(timings.totalMs / 1000).toFixed(2)} s), training ${(training / 1000).toFixed(2)} s, ` +
        `overhead beyond training ${((total - training) / 1000).toFixed(2)} s`,
    );
    for (const t of timings.stages) console.log(`  ${stageTimingLine(t)}`);
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const warm = rows.length > 1 ? rows.slice(1) : rows;
  const floorMs = median(floor);
  const overhead = median(warm.map((r) => r.total - r.training));
  console.log(`\nfloor (bare workflow, five no-op activities, median of ${floor.length}): ${floorMs.toFixed(0)} ms`);
  console.log(
    `real run (median of ${warm.length} warm): total ${(median(warm.map((r) => r.total)) / 1000).toFixed(2)} s, ` +
      `training ${(median(warm.map((r) => r.training)) / 1000).toFixed(2)} s, overhead beyond training ` +
      `${(overhead / 1000).toFixed(2)} s (target ≤ 2 s), ${(overhead / floorMs).toFixed(1)}× the floor`,
  );
  console.log(
    `load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} on ${os.cpus().length} cores`,
  );
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  await server.stop();
  await rm(root, { recursive: true, force: true });
}
