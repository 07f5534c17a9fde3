import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRegistry } from '../control/registry';
import { taskQueueOf } from '../control/task-queues';
import { BACKEND_NAMES } from '../engine/backend';
import { createTestEnv, type TestEnv } from './helpers/env';
import { gantry } from './helpers/cli';
import { startInProcessWorkers, waitFor } from './helpers/workers';

let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;
const slice = [
  '--set',
  'data.limits.train=1000',
  '--set',
  'data.limits.test=300',
  '--set',
  'train.epochs=1',
  '--set',
  'evaluation.minAccuracy=0.3',
];

beforeAll(async () => {
  env = await createTestEnv('cli');
  // Two train workers (one slot each): enough for the 2-replica job below.
  workers = await startInProcessWorkers(env, ['control', 'train', 'train']);
});
afterAll(async () => {
  await workers?.stop();
});

describe('gantry run', () => {
  it('--json prints the final result as one JSON object; it, --follow and status carry per-stage timings', async () => {
    const { code, stdout, stderr } = await gantry(
      ['run', 'fashion-mnist', ...slice, '--set', 'model.name=cli-model', '--json', '--follow'],
      env.env,
    );
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout.trim());
    expect(result).toMatchObject({ model: 'cli-model', version: 1, blessed: true });
    expect(BACKEND_NAMES).toContain(result.backend);
    expect(result.backends.train.name).toBe(result.backend);
    expect(typeof result.runId).toBe('string');
    expect(result.testAccuracy).toBeGreaterThan(0.3);
    expect(result.reasons.length).toBeGreaterThan(0);

    // Each stage's wall time, and its activity's own queue wait and run time; the trainer's run in its parts.
    const stages = result.timings.stages as { stage: string; wallMs: number; queueMs: number; runMs: number }[];
    expect(stages.map((s) => s.stage)).toEqual(['ingest', 'train', 'evaluate', 'register', 'publish', 'rollout']);
    for (const s of stages.slice(0, 5)) {
      expect(s.queueMs, s.stage).toBeGreaterThanOrEqual(0);
      expect(s.runMs, s.stage).toBeGreaterThanOrEqual(0);
      expect(s.wallMs, s.stage).toBeGreaterThanOrEqual(s.runMs);
    }
    const train = result.timings.stages[1];
    expect(Object.keys(train.parts)).toEqual(['setup', 'load data', 'epochs', 'checkpoint', 'save']);
    expect(train.parts.epochs).toBeGreaterThan(0);
    expect(train.runMs).toBeGreaterThanOrEqual(train.parts.epochs);
    expect(result.timings.totalMs).toBeGreaterThanOrEqual(stages.reduce((sum, s) => sum + s.wallMs, 0));
    // --follow (stderr) says what each stage took as it finishes, and the whole run's time at the end.
    expect(stderr).toMatch(/took: ingest \d+ ms \(queue \d+ ms, run \d+ ms\)/);
    expect(stderr).toMatch(/took: train .+: setup \d+ ms, load data \d+ ms, epochs [\d.]+ m?s, checkpoint/);
    expect(stderr).toMatch(/took: [\d.]+ s in all/);
    const plain = await gantry(['status', result.runId], env.env);
    expect(plain.stdout).toMatch(/^timings: .+ in all$/m);
    expect(plain.stdout).toMatch(/^ {2}evaluate \d+ ms \(queue \d+ ms, run \d+ ms\): load test split/m);

    const status = await gantry(['status', result.runId, '--json'], env.env);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      runId: result.runId,
      status: 'COMPLETED',
      result: { version: 1 },
    });

    const list = await gantry(['models', 'list', '--json'], env.env);
    expect(JSON.parse(list.stdout)).toContainEqual({ model: 'cli-model', versions: 1, aliases: { champion: 1 } });
    const describeOut = await gantry(['models', 'describe', 'cli-model'], env.env);
    expect(describeOut.stdout).toMatch(/v1\tpublished\tblessed/);
  });

  it('--follow --replicas shows each replica of a data-parallel job; status --replicas lists them', async () => {
    const { code, stdout, stderr } = await gantry(
      [
        'run',
        'fashion-mnist',
        ...slice,
        '--set',
        'model.name=cli-replicas',
        '--set',
        'train.strategy=multi-worker-mirrored',
        '--set',
        'train.replicas=2',
        '--set',
        'train.batchSize=32',
        '--set',
        'train.stepDelayMs=40',
        '--follow',
        '--replicas',
      ],
      env.env,
    );
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/rank 0\/2 \S+ (epoch \d+ step \d+\/\d+ loss \d\.\d{4} · \d+ samples\/s|joined)/);
    expect(stderr).toMatch(/rank 1\/2 /);
    expect(stdout).toMatch(/multi-worker-mirrored × 2 replicas/);
    // The rollout stage's decisions are followed too: the first version has nothing to compare against.
    expect(stderr).toMatch(/\] rollout \d\d:\d\d:\d\d final +promote +no champion to compare against/);
    expect(stdout).toMatch(/rollout +v1 promoted: no champion to compare against/);
    const runId = /run\s+(\S+)/.exec(stdout)![1]!;
    const status = await gantry(['status', runId, '--replicas'], env.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/train job: multi-worker-mirrored, attempt 1, completed, 2 of 2 replicas/);
    expect(status.stdout).toMatch(/rank 0 \(.+\): epoch 1 step \d+\/\d+ loss/);
    expect(status.stdout).toMatch(/rank 1 \(.+\): epoch 1 step/);
  });

  it('refuses an invalid spec before anything starts, naming every bad field, exit code 2', async () => {
    const startedAt = new Date().toISOString();
    const { code, stderr } = await gantry(
      [
        'run',
        'fashion-mnist',
        '--set',
        'model.name=bad-spec',
        '--set',
        'train.epochs=0',
        '--set',
        'data.validationFraction=1.5',
        '--set',
        'model.architecture=transformer',
        '--set',
        'train.optimizer=adagrad',
      ],
      env.env,
    );
    expect(code).toBe(2);
    expect(stderr).toMatch(/train\.epochs: .*>=\s*1/);
    expect(stderr).toMatch(/data\.validationFraction: /);
    expect(stderr).toMatch(/model\.architecture: unknown model architecture "transformer"; known: mlp, cnn/);
    expect(stderr).toMatch(/train\.optimizer: /);
    expect(await readRegistry(workers.client, 'bad-spec')).toBeUndefined();
    // Only this file's task queue and this test's time: runs other tests left on the shared server do not count.
    const query = `WorkflowType = 'retrainWorkflow' AND TaskQueue = '${taskQueueOf('control')}'`;
    let runs = 0;
    for await (const _ of workers.client.workflow.list({ query: `${query} AND StartTime >= '${startedAt}'` })) runs++;
    expect(runs).toBe(0);
  });

  it('names a bad architecture option and a malformed --set', async () => {
    const bad = await gantry(
      ['run', 'fashion-mnist', '--set', 'model.options={"hiddenUnits":[0]}', '--set', 'nonsense'],
      env.env,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--set: "nonsense" is not path=value/);
    const option = await gantry(['run', 'fashion-mnist', '--set', 'model.options={"hiddenUnits":[0]}'], env.env);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/model\.options\.hiddenUnits\.0: /);
  });

  it('says which pipeline is unknown', async () => {
    const { code, stderr } = await gantry(['run', 'no-such-pipeline'], env.env);
    expect(code).toBe(2);
    expect(stderr).toMatch(/unknown pipeline "no-such-pipeline"/);
  });
});

describe('gantry doctor', () => {
  it('names the backend that runs and why each faster one is missing, and the all-reduce transport', async () => {
    const { code, stdout } = await gantry(['doctor', '--json'], env.env);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    // Every backend ahead of the chosen one in the preference order is listed as missing, with a reason.
    const ahead = BACKEND_NAMES.slice(0, BACKEND_NAMES.indexOf(report.backend.name));
    expect(report.backend.unavailable.map((u: { name: string }) => u.name)).toEqual(ahead);
    for (const missing of report.backend.unavailable) expect(missing.reason).toMatch(/\S{3,}/);
    expect(report.checks).toContainEqual(
      expect.objectContaining({ name: 'backend', ok: true, detail: expect.stringContaining(report.backend.name) }),
    );
    expect(report.checks).toContainEqual(
      expect.objectContaining({ name: 'temporal', ok: true, detail: expect.stringContaining(env.address) }),
    );
    expect(report.checks).toContainEqual(expect.objectContaining({ name: 'fashion-mnist', ok: true }));
    // scripts/setup.sh builds the addon on every machine CI runs on.
    expect(report.checks).toContainEqual({
      name: 'shared-memory all-reduce',
      ok: true,
      detail: 'trainers on one host all-reduce through /dev/shm',
    });
    const withoutAddon = await gantry(['doctor', '--json'], {
      ...env.env,
      GANTRY_SHARED_MEMORY_ADDON: '/nonexistent/addon.node',
    });
    expect(JSON.parse(withoutAddon.stdout).checks).toContainEqual({
      name: 'shared-memory all-reduce',
      ok: false,
      detail:
        'the shared-memory addon is not built (/nonexistent/addon.node; scripts/setup.sh builds it); ' +
        'trainers all-reduce over TCP',
    });
    if (process.env.GANTRY_EXPECT_NATIVE_MISSING) {
      // CI's second pass removes libtensorflow from the built package: doctor must say so.
      expect(report.backend.name).toBe('wasm');
      expect(report.backend.unavailable).toContainEqual({
        name: 'tfjs-node',
        reason: expect.stringMatching(/libtensorflow.*(No such file|cannot open)/),
      });
    }
  });
});

describe('reaching Temporal', () => {
  it('works from any directory and names the server it cannot reach', async () => {
    const elsewhere = await gantry(['models', 'list', '--json'], env.env, 120_000, os.tmpdir());
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    const unreachable = await gantry(['models', 'list'], {
      ...env.env,
      TEMPORAL_ADDRESS: '127.0.0.1:1',
      GANTRY_CONNECT_TIMEOUT: '1s',
    });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/cannot reach Temporal at 127\.0\.0\.1:1/);
    const malformed = await gantry(['models', 'list'], { ...env.env, TEMPORAL_ADDRESS: 'no-port' });
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/TEMPORAL_ADDRESS: must be host:port/);
  });
});

describe('gantry schedule', () => {
  it('creates, lists, describes, triggers, pauses, unpauses and deletes a schedule on the real server', async () => {
    const id = `${env.queuePrefix}-sched`;
    const create = await gantry(
      [
        'schedule',
        'create',
        'fashion-mnist',
        '--cron',
        '0 3 * * *',
        '--overlap',
        'buffer-one',
        '--id',
        id,
        ...slice,
        '--set',
        'model.name=scheduled-model',
      ],
      env.env,
    );
    expect(create.code, create.stderr).toBe(0);

    const list = JSON.parse((await gantry(['schedule', 'list', '--json'], env.env)).stdout);
    expect(list).toContainEqual(
      expect.objectContaining({ scheduleId: id, paused: false, workflowType: 'retrainWorkflow' }),
    );

    const described = JSON.parse((await gantry(['schedule', 'describe', id, '--json'], env.env)).stdout);
    expect(described).toMatchObject({
      scheduleId: id,
      paused: false,
      cron: '0 3 * * *',
      overlap: 'BUFFER_ONE',
      pipeline: 'fashion-mnist',
    });
    expect(new Date(described.nextActionTimes[0]).getUTCHours()).toBe(3);

    expect((await gantry(['schedule', 'trigger', id], env.env)).code).toBe(0);
    // The triggered run is a real retrain: it registers a version of the scheduled model.
    const registry = await waitFor(
      'the triggered run to register a version',
      async () => {
        const state = await readRegistry(workers.client, 'scheduled-model');
        return state && state.versions.length > 0 ? state : undefined;
      },
      120_000,
      500,
    );
    expect(registry.versions[0]!.lineage.runId).toMatch(new RegExp(`^fashion-mnist-scheduled`));
    // What each command did is read back in-process: `schedule describe` itself is checked above.
    const schedule = workers.client.schedule.getHandle(id);
    expect((await schedule.describe()).info.numActionsTaken).toBe(1);

    expect((await gantry(['schedule', 'pause', id, '--note', 'maintenance'], env.env)).code).toBe(0);
    expect((await schedule.describe()).state).toMatchObject({ paused: true, note: 'maintenance' });
    expect((await gantry(['schedule', 'unpause', id], env.env)).code).toBe(0);
    expect((await schedule.describe()).state.paused).toBe(false);

    expect((await gantry(['schedule', 'delete', id], env.env)).code).toBe(0);
    const gone = await gantry(['schedule', 'describe', id], env.env);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(new RegExp(`no schedule with id "${id}"`));
  });

  it('refuses a bad overlap policy and a bad cron expression', async () => {
    const overlap = await gantry(
      ['schedule', 'create', 'fashion-mnist', '--cron', '0 3 * * *', '--overlap', 'sometimes'],
      env.env,
    );
    expect(overlap.code).toBe(2);
    expect(overlap.stderr).toMatch(/sometimes/);
    const cron = await gantry(
      ['schedule', 'create', 'fashion-mnist', '--cron', 'every tuesday', '--id', `${env.queuePrefix}-bad-cron`],
      env.env,
    );
    expect(cron.code).toBe(2);
    expect(cron.stderr).toMatch(/--cron: "every tuesday"/);
  });
});
