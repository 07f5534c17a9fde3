/**
 * `npm run record-histories [-- --release NAME] [--only TEXT]`: records the event history of every workflow
 * type Gantry's workers run, over its main paths, into test/replay/histories/<release>/ (one JSON file per case and a
 * manifest.json), for test/replay/replay.test.ts to replay against the current workflow bundle.
 *
 * The workflows run for real on Temporal's time-skipping test server (minute-long bakes take seconds) with
 * the production workflow bundle (workflows/index.ts); their activities are in-memory fakes whose answers
 * have the shapes the real activities return. What replay checks is the workflow code's commands, so a fake
 * activity's result is as good as a real one as long as it takes the same branches. Long-running
 * workflows (registry, rollout, experiment) are recorded both completed and left open mid-way, as a
 * `.gantry/` home holds them when its workers are upgraded.
 *
 * --release defaults to <package version>-<short commit>; --only records the cases whose
 * `<workflowType>-<case>` contains TEXT and keeps the release's other recordings.
 *
 * Recordings accumulate: each release keeps its folder, so every supported release's histories keep
 * replaying. Record once per release, from that release's code, before changing any workflow.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, Context } from '@temporalio/activity';
import proto from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Runtime, Worker } from '@temporalio/worker';
import { PROJECT_ROOT, resolveTemporalTestServer } from '../control/temporal-binary';
import { validatePipeline } from '../pipelines';
import fashionMnist from '../pipelines/fashion-mnist';
import { RolloutSpecSchema } from '../pipelines/spec';
import {
  claimTrafficUpdate,
  concludeUpdate,
  experimentStatusQuery,
  joinJobUpdate,
  promoteUpdate,
  publishVersionUpdate,
  recordEventUpdate,
  registerVersionUpdate,
  releaseTrafficUpdate,
  rollbackRolloutUpdate,
  rollbackUpdate,
  rolloutStatusQuery,
  setServingUpdate,
  stopExperimentUpdate,
  trainJobWorkflowId,
  type DeployActivities,
  type ExperimentInput,
  type RegisterRequest,
  type RetrainInput,
  type RolloutInput,
  type ServingMeasurement,
} from '../workflows/api';
import { canaryLayout } from '../workflows/serving-desired';
import { WORKFLOWS_PATH } from '../workers/pool-worker';

export const HISTORIES_DIR = path.join(PROJECT_ROOT, 'test', 'replay', 'histories');

export interface RecordedHistory {
  workflowType: string;
  case: string;
  file: string;
  workflowId: string;
  /** Whether the workflow was still running when its history was taken. */
  open: boolean;
  events: number;
}

export interface HistoryManifest {
  release: string;
  gantryVersion: string;
  gitCommit: string;
  sdkVersion: string;
  recordedAt: string;
  histories: RecordedHistory[];
}

// ---- fakes of the activities, with the shapes the real ones return ----

/** One version's traffic window: `requests` requests, `errors` failed, and feedback accuracy. */
function window(requests: number, { errors = 0, accuracy = 0.9, labelled = 200 } = {}) {
  const correct = Math.round(labelled * accuracy);
  return {
    requests,
    errors,
    errorRate: requests ? errors / requests : 0,
    p99Ms: 20,
    p90Ms: 10,
    feedback: { labelled, correct, accuracy: labelled ? correct / labelled : null },
    classCounts: [requests / 2, requests / 2],
  };
}

type Measure = () => Pick<ServingMeasurement, 'versions' | 'shadow'>;

function deployActivities(measure: Measure): DeployActivities {
  let measured = 0;
  return {
    applyServing: async (input) => ({
      generation: input.desired.generation,
      servers: [{ url: 'http://server-a:8501', ok: true, changed: [] }],
    }),
    servingServers: async () => ['http://server-a:8501'],
    measureServing: async () => ({
      takenAt: new Date().toISOString(),
      servers: [{ url: 'http://server-a:8501', ok: true }],
      snapshot: { taken: ++measured },
      ...measure(),
    }),
    claimTraffic: async (input: any) => ({
      id: input.request.owner,
      kind: input.request.kind,
      version: input.request.version,
      since: 'now',
    }),
    releaseTraffic: async () => null,
    setServing: async () => ({}) as never,
    conclude: async () => ({}) as never,
    recordEvent: async () => {},
  } as DeployActivities;
}

const healthy: Measure = () => ({ versions: { '1': window(1000), '2': window(1000) }, shadow: {} });
const failing: Measure = () => ({
  versions: { '1': window(1000), '2': window(1000, { errors: 300 }) },
  shadow: {},
});

const registerRequest = (runId: string): RegisterRequest => ({
  artifactUri: `file:///artifacts/${runId}`,
  metrics: { testAccuracy: 0.9, testLoss: 0.3, perClassAccuracy: [] },
  lineage: {
    runId,
    datasetFingerprint: 'f'.repeat(64),
    spec: {},
    parentVersion: null,
    gitCommit: null,
    backend: 'cpu',
  },
  blessed: true,
  reasons: [],
});

const dataset = {
  source: 'fashion-mnist',
  fingerprint: 'f'.repeat(64),
  task: 'classification',
  featureShape: [28, 28, 1],
  featureDtype: 'uint8',
  numClasses: 10,
  classNames: [],
  preprocessingUri: null,
  counts: { train: 200, validation: 20, test: 50 },
  splits: {},
  statistics: { train: { count: 200, labelHistogram: Array(10).fill(20) } },
  manifestUri: 'file:///datasets/f/manifest.json',
  drift: { drifted: false, reasons: [] },
  anomalies: [],
};

const trained = {
  modelUri: 'file:///artifacts/model',
  history: [{ epoch: 1, loss: 0.5, accuracy: 0.8, valLoss: 0.5, valAccuracy: 0.8, seconds: 1 }],
  attempt: 1,
  resumedFromEpoch: null,
  backend: { name: 'cpu' },
  execution: { mode: 'eager', reason: 'recorded with fake activities' },
  samplesPerSecond: 1000,
  seconds: 1,
};

/** Gantry's stage activities (ingest … publish, train, a replica of a data-parallel job) in memory. */
function stageActivities(env: TestWorkflowEnvironment) {
  return {
    ingest: async () => dataset,
    train: async () => trained,
    // A replica joins its job's rendezvous by Update, as training/replica does, then "trains".
    trainReplica: async (input: { jobId: string; jobAttempt: number; replica: number; runId: string }) => {
      const job = env.client.workflow.getHandle(input.jobId);
      const answer = await job.executeUpdate(joinJobUpdate, {
        args: [
          {
            jobId: input.jobId,
            jobAttempt: input.jobAttempt,
            replica: input.replica,
            host: '127.0.0.1',
            port: 40_000 + input.replica,
            identity: Context.current().info.activityId,
          },
        ],
      });
      return { rank: answer.rank, worldSize: answer.worldSize, steps: 10, trained: answer.rank === 0 ? trained : null };
    },
    evaluate: async () => ({
      candidate: { accuracy: 0.8, loss: 0.5, perClassAccuracy: [] },
      champion: { version: 1, metrics: { accuracy: 0.75, loss: 0.6, perClassAccuracy: [] } },
      blessed: true,
      reasons: ['PASS accuracy 0.800 >= 0.5'],
      reportUri: 'file:///report.json',
      backend: { name: 'cpu' },
    }),
    register: async () => ({ version: 2 }),
    publish: async () => ({ publishedPath: '/models/fashion-mnist/2' }),
  };
}

const inspection = {
  format: 'saved-model',
  signature: 'serving_default',
  inputs: [{ key: 'x', dtype: 'float32', shape: [-1, 28, 28, 1] }],
  outputs: [{ key: 'y', dtype: 'float32', shape: [-1, 10] }],
  files: [{ name: 'saved_model.pb', bytes: 1000 }],
};

function importActivities(blessed: boolean) {
  return {
    inspectImport: async () => inspection,
    stageImport: async (input: { importId: string }) => ({
      artifactUri: `file:///artifacts/imports/${input.importId}`,
    }),
    evaluateImport: async () =>
      blessed
        ? {
            evaluation: {
              candidate: { accuracy: 0.8, loss: 0.5, perClassAccuracy: [] },
              champion: null,
            },
            datasetFingerprint: 'f'.repeat(64),
            reason: null,
            blessed: true,
            reasons: ['PASS accuracy'],
          }
        : { evaluation: null, datasetFingerprint: null, reason: 'no dataset fits', blessed: false, reasons: [] },
    registerImport: async () => ({ version: 3 }),
    publishImport: async () => ({ publishedPath: '/models/imported/3' }),
  };
}

function batchPredictActivities(failShard?: number) {
  return {
    planBatchPredict: async () => ({
      kind: 'idx',
      rows: 2500,
      shards: [
        { index: 0, start: 0, end: 1000 },
        { index: 1, start: 1000, end: 2000 },
        { index: 2, start: 2000, end: 2500 },
      ],
      workDir: '/tmp/.preds.jsonl.job.shards',
    }),
    predictShard: async (input: { shard: { index: number; start: number; end: number } }) => {
      const { index, start, end } = input.shard;
      if (index === failShard)
        throw ApplicationFailure.nonRetryable(`bad row ${start + 7} at /tmp/x.csv:${start + 9}: bad`, 'BadRow');
      const bad = index === 1 ? 1 : 0;
      const badRows = bad ? [{ where: `/tmp/x.csv:${start + 9}`, reason: 'has 2 fields, the header has 7' }] : [];
      return { index, predicted: end - start - bad, bad, badRows, computed: true };
    },
    assemblePredictions: async () => ({ bytes: 123_456, rejects: '/tmp/preds.jsonl.rejects.jsonl' }),
  };
}

function batchPredictInput(taskQueue: string) {
  return {
    model: 'fashion-mnist',
    version: 1,
    versionDir: '/models/fashion-mnist/1',
    input: '/tmp/t10k-images-idx3-ubyte.gz',
    output: '/tmp/preds.jsonl',
    format: 'jsonl',
    onBadRow: 'skip',
    shardRows: 1000,
    pool: 'train',
    shardTaskQueue: taskQueue,
  };
}

// ---- the cases ----

const ROLLOUT_STEPS = [
  { percent: 10, bake: '1m' },
  { percent: 100, bake: '1m' },
];

function rolloutInput(extra: Record<string, unknown> = {}): RolloutInput {
  return {
    model: 'shirts',
    candidate: 2,
    champion: 1,
    championAlias: 'champion',
    spec: RolloutSpecSchema.parse({ steps: ROLLOUT_STEPS, analysisInterval: '20s', minRequests: 100, ...extra }),
  };
}

function experimentInput(duration: string): ExperimentInput {
  return {
    model: 'boots',
    arms: [
      { version: 1, weight: 50 },
      { version: 2, weight: 50 },
    ],
    duration,
    championAlias: 'champion',
    champion: 1,
    alpha: 0.05,
    minFeedback: 100,
    analysisInterval: '5m',
  };
}

function retrainInput(taskQueue: string, { replicas = 1, rollout = false } = {}): RetrainInput {
  const spec = validatePipeline({
    ...fashionMnist,
    data: { ...fashionMnist.data, limits: { train: 1000, test: 50 } },
    train: { ...fashionMnist.train, epochs: 1, replicas },
    evaluation: { ...fashionMnist.evaluation, minAccuracy: 0.5 },
    deployment: {
      ...fashionMnist.deployment,
      rollout: rollout ? { enabled: true, steps: ROLLOUT_STEPS, analysisInterval: '20s', minRequests: 100 } : undefined,
    },
  } as never);
  return { spec, taskQueues: { control: taskQueue, train: taskQueue }, deploymentPrefix: 'replay' };
}

/** A study of 4 ASHA trials (rungs at 1, 2 and 4 epochs), 2 at a time, on the retrain input's spec. */
function tuneInput(taskQueue: string): RetrainInput {
  const input = retrainInput(taskQueue);
  const spec = validatePipeline({
    ...input.spec,
    train: { ...input.spec.train, epochs: 4 },
    tuning: {
      space: { 'train.learningRate': { logUniform: [1e-4, 1e-2] }, 'model.options.dropout': { uniform: [0, 0.5] } },
      budget: { trials: 4 },
      parallelism: 2,
      algorithm: 'asha',
      asha: { minEpochs: 1, reductionFactor: 2 },
    },
  });
  return { ...input, spec };
}

/** The trainer of a study's trial: `untilEpoch` epochs whose validation accuracy follows the learning rate. */
async function trainTrial(input: { spec: { train: { learningRate: number } }; untilEpoch?: number }) {
  const level = 0.5 + 0.05 * Math.log10(input.spec.train.learningRate * 1e4);
  const history = Array.from({ length: input.untilEpoch ?? 1 }, (_, i) => ({
    ...trained.history[0]!,
    epoch: i + 1,
    valAccuracy: level + 0.01 * i,
  }));
  return { ...trained, history };
}

interface Case {
  workflowType: string;
  name: string;
  activities: (env: TestWorkflowEnvironment) => object;
  /** Starts the workflow and drives it; returns its handle once the history to record is complete. */
  drive: (env: TestWorkflowEnvironment, taskQueue: string, workflowId: string) => Promise<WorkflowHandle>;
  open?: boolean;
}

/** A registry of model "coats" with v1 (champion) and v2 published. */
async function startRegistry(env: TestWorkflowEnvironment, taskQueue: string, workflowId: string, extra = {}) {
  const registry = await env.client.workflow.start('registryWorkflow', {
    taskQueue,
    workflowId,
    args: [{ model: 'coats', reconcileInterval: '1h', ...extra }],
  });
  for (const [version, alias] of [
    [1, 'champion'],
    [2, null],
  ] as const) {
    await registry.executeUpdate(registerVersionUpdate, { args: [registerRequest(`run-${version}`)] });
    await registry.executeUpdate(publishVersionUpdate, {
      args: [{ version, publishedPath: `/models/coats/${version}`, alias }],
    });
  }
  return registry;
}

const finished = async (handle: WorkflowHandle) => (await handle.result(), handle);

const CASES: Case[] = [
  {
    workflowType: 'registryWorkflow',
    name: 'open-serving',
    open: true,
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const registry = await startRegistry(env, taskQueue, workflowId);
      await registry.executeUpdate(promoteUpdate, { args: [{ version: 2, reason: 'better' }] });
      const owner = 'rollout-a';
      await registry.executeUpdate(claimTrafficUpdate, { args: [{ owner, kind: 'rollout', version: 1 }] });
      await registry.executeUpdate(setServingUpdate, {
        args: [{ owner, layout: canaryLayout(2, 1, 10, 'champion'), note: 'canary 10 %' }],
      });
      await registry.executeUpdate(concludeUpdate, {
        args: [{ owner, candidate: 1, outcome: 'rolled-back', reasons: ['v1 breached'] }],
      });
      await registry.executeUpdate(releaseTrafficUpdate, { args: [{ owner }] });
      await registry.executeUpdate(rollbackUpdate, { args: [{ to: 1, reason: 'back to v1' }] });
      // One reconcile: the timer fires and the desired state is applied again.
      await env.sleep('61m');
      return registry;
    },
  },
  {
    workflowType: 'registryWorkflow',
    name: 'continued-as-new',
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const registry = await startRegistry(env, taskQueue, workflowId, { maxHistoryEvents: 60 });
      // Events recorded until the history is over its limit: the registry hands its state to a new run.
      const first = env.client.workflow.getHandle(workflowId, registry.firstExecutionRunId);
      for (let i = 0; i < 20 && (await first.describe()).status.name === 'RUNNING'; i++)
        await env.client.workflow.getHandle(workflowId).executeUpdate(recordEventUpdate, {
          args: [{ owner: 'manual', kind: 'serving', version: 1, message: `note ${i}` }],
        });
      await waitUntil(async () => (await first.describe()).status.name !== 'RUNNING');
      return first;
    },
  },
  {
    workflowType: 'rolloutWorkflow',
    name: 'promoted',
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) =>
      finished(await env.client.workflow.start('rolloutWorkflow', { taskQueue, workflowId, args: [rolloutInput()] })),
  },
  {
    workflowType: 'rolloutWorkflow',
    name: 'rolled-back',
    activities: () => deployActivities(failing),
    drive: async (env, taskQueue, workflowId) =>
      finished(await env.client.workflow.start('rolloutWorkflow', { taskQueue, workflowId, args: [rolloutInput()] })),
  },
  {
    workflowType: 'rolloutWorkflow',
    name: 'manual-rollback',
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const rollout = await env.client.workflow.start('rolloutWorkflow', {
        taskQueue,
        workflowId,
        args: [rolloutInput()],
      });
      await env.sleep('30s');
      await rollout.executeUpdate(rollbackRolloutUpdate, { args: [{ reason: 'operator' }] });
      return finished(rollout);
    },
  },
  {
    workflowType: 'rolloutWorkflow',
    name: 'open-waiting-for-analysis',
    open: true,
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const rollout = await env.client.workflow.start('rolloutWorkflow', {
        taskQueue,
        workflowId,
        args: [rolloutInput()],
      });
      await env.sleep('50s');
      await waitUntil(async () => ((await rollout.query(rolloutStatusQuery)).analyses.length >= 2 ? true : undefined));
      return rollout;
    },
  },
  {
    workflowType: 'rolloutWorkflow',
    name: 'open-awaiting-approval',
    open: true,
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const rollout = await env.client.workflow.start('rolloutWorkflow', {
        taskQueue,
        workflowId,
        args: [rolloutInput({ approval: { timeout: '1h' } })],
      });
      await env.sleep('3m');
      await waitUntil(async () =>
        (await rollout.query(rolloutStatusQuery)).phase === 'awaiting-approval' ? true : undefined,
      );
      return rollout;
    },
  },
  {
    workflowType: 'experimentWorkflow',
    name: 'finished',
    activities: () =>
      deployActivities(() => ({
        versions: {
          '1': window(1000, { accuracy: 0.7, labelled: 400 }),
          '2': window(1000, { accuracy: 0.85, labelled: 400 }),
        },
        shadow: {},
      })),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('experimentWorkflow', {
          taskQueue,
          workflowId,
          args: [experimentInput('30m')],
        }),
      ),
  },
  {
    workflowType: 'experimentWorkflow',
    name: 'stopped-early',
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const experiment = await env.client.workflow.start('experimentWorkflow', {
        taskQueue,
        workflowId,
        args: [experimentInput('7d')],
      });
      await env.sleep('12m');
      await experiment.executeUpdate(stopExperimentUpdate, { args: [{ reason: 'enough' }] });
      return finished(experiment);
    },
  },
  {
    workflowType: 'experimentWorkflow',
    name: 'open-running',
    open: true,
    activities: () => deployActivities(healthy),
    drive: async (env, taskQueue, workflowId) => {
      const experiment = await env.client.workflow.start('experimentWorkflow', {
        taskQueue,
        workflowId,
        args: [experimentInput('7d')],
      });
      await env.sleep('12m');
      await waitUntil(async () =>
        (await experiment.query(experimentStatusQuery)).phase === 'running' ? true : undefined,
      );
      return experiment;
    },
  },
  {
    workflowType: 'tuneWorkflow',
    name: 'asha-registered',
    activities: (env) => ({ ...stageActivities(env), train: trainTrial }),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('tuneWorkflow', { taskQueue, workflowId, args: [tuneInput(taskQueue)] }),
      ),
  },
  {
    workflowType: 'retrainWorkflow',
    name: 'published',
    activities: (env) => stageActivities(env),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('retrainWorkflow', { taskQueue, workflowId, args: [retrainInput(taskQueue)] }),
      ),
  },
  {
    workflowType: 'retrainWorkflow',
    name: 'distributed-with-rollout',
    activities: (env) => ({ ...stageActivities(env), ...deployActivities(healthy) }),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('retrainWorkflow', {
          taskQueue,
          workflowId,
          args: [retrainInput(taskQueue, { replicas: 2, rollout: true })],
        }),
      ),
  },
  {
    workflowType: 'trainJobWorkflow',
    name: 'two-replicas',
    activities: (env) => stageActivities(env),
    // The job is the child of a run with two replicas: its history is the one recorded.
    drive: async (env, taskQueue, workflowId) => {
      await env.client.workflow.execute('retrainWorkflow', {
        taskQueue,
        workflowId,
        args: [retrainInput(taskQueue, { replicas: 2 })],
      });
      return env.client.workflow.getHandle(trainJobWorkflowId(workflowId));
    },
  },
  {
    workflowType: 'importModelWorkflow',
    name: 'published',
    activities: () => importActivities(true),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('importModelWorkflow', {
          taskQueue,
          workflowId,
          args: [{ model: 'imported', path: '/tmp/saved-model', signature: 'serving_default' }],
        }),
      ),
  },
  {
    workflowType: 'importModelWorkflow',
    name: 'unevaluated',
    activities: () => importActivities(false),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('importModelWorkflow', {
          taskQueue,
          workflowId,
          args: [{ model: 'imported', path: '/tmp/tfjs-model', signature: 'serving_default' }],
        }),
      ),
  },
  {
    workflowType: 'batchPredictWorkflow',
    name: 'assembled',
    activities: () => batchPredictActivities(),
    drive: async (env, taskQueue, workflowId) =>
      finished(
        await env.client.workflow.start('batchPredictWorkflow', {
          taskQueue,
          workflowId,
          args: [batchPredictInput(taskQueue)],
        }),
      ),
  },
  {
    workflowType: 'batchPredictWorkflow',
    name: 'bad-row-failed',
    activities: () => batchPredictActivities(1),
    drive: async (env, taskQueue, workflowId) => {
      const handle = await env.client.workflow.start('batchPredictWorkflow', {
        taskQueue,
        workflowId,
        args: [{ ...batchPredictInput(taskQueue), onBadRow: 'fail' }],
      });
      await handle.result().catch(() => undefined);
      return handle;
    },
  },
];

/**
 * The history as protobufjs writes it (enum names, 64-bit integers as strings, bytes in base64); historyFromFile
 * in test/replay/histories.ts reads it back. Not the SDK's historyToJSON: with the protobufjs copies installed
 * here it throws "type must be a Type".
 */
function historyJSON(history: proto.temporal.api.history.v1.IHistory): string {
  return JSON.stringify(proto.temporal.api.history.v1.History.fromObject(history).toJSON());
}

async function waitUntil(check: () => Promise<unknown>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => undefined)) return;
    if (Date.now() > end) throw new Error('timed out waiting for the workflow');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { release: { type: 'string' }, only: { type: 'string' } } });
  const pkg = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  const sdk = JSON.parse(
    await readFile(path.join(PROJECT_ROOT, 'node_modules', '@temporalio', 'workflow', 'package.json'), 'utf8'),
  ) as { version: string };
  const commit = git('rev-parse', 'HEAD');
  const dirty = git('status', '--porcelain', '--', 'workflows') !== '';
  const release = values.release ?? `${pkg.version}-${commit.slice(0, 7)}`;
  if (!/^[\w.-]+$/.test(release)) throw new Error(`--release "${release}": use letters, digits, '.', '_' and '-'`);
  if (dirty) console.warn('warning: workflows/ has uncommitted changes; the recordings are not of commit ' + commit);
  const dir = path.join(HISTORIES_DIR, release);
  if (
    !values.only &&
    (await stat(dir).then(
      () => true,
      () => false,
    ))
  )
    console.warn(`${dir} exists: its recordings are replaced`);
  await mkdir(dir, { recursive: true });

  Runtime.install({
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error } as never,
  });
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const recorded: RecordedHistory[] = [];
  for (const c of CASES) {
    const id = `${c.workflowType}-${c.name}`;
    if (values.only && !id.includes(values.only)) continue;
    // A server of its own per case: a case's open workflows and its clock do not reach the next one.
    const env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: resolveTemporalTestServer() } },
    });
    try {
      const taskQueue = `record-${id}`;
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: { code },
        activities: c.activities(env),
      });
      const handle = await worker.runUntil(c.drive(env, taskQueue, `${id}-${Date.now()}`));
      const history = await handle.fetchHistory();
      const file = `${id}.json`;
      const json = historyJSON(history);
      await writeFile(path.join(dir, file), json);
      const events = history.events?.length ?? 0;
      const open = !!c.open;
      recorded.push({ workflowType: c.workflowType, case: c.name, file, workflowId: handle.workflowId, open, events });
      console.log(`${file}: ${events} events, ${(json.length / 1024).toFixed(1)} KiB${open ? ' (open)' : ''}`);
    } finally {
      await env.teardown();
    }
  }
  const manifest: HistoryManifest = {
    release,
    gantryVersion: pkg.version,
    gitCommit: commit,
    sdkVersion: sdk.version,
    recordedAt: new Date().toISOString(),
    histories: recorded,
  };
  if (values.only) {
    // Some cases re-recorded: the release's other recordings stay in its manifest.
    const previous = await readFile(path.join(dir, 'manifest.json'), 'utf8').then(
      (text) => (JSON.parse(text) as HistoryManifest).histories,
      () => [],
    );
    const fresh = new Set(recorded.map((r) => r.file));
    manifest.histories = [...previous.filter((h) => !fresh.has(h.file)), ...recorded];
  }
  await writeFile(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // In the formatter's layout, so `make lint` (biome format .) passes over the checked-in recordings.
  execFileSync('npx', ['biome', 'format', '--write', dir], { cwd: PROJECT_ROOT, stdio: 'ignore' });
  console.log(`${recorded.length} histories in ${path.relative(PROJECT_ROOT, dir)}`);
}

const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error };

await main();
