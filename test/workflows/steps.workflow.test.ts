import { WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { createStepActivities } from '../../activities/steps';
import type { DatasetRef } from '../../data/ingest';
import { defineStep, type StepContext, type StepDefinition } from '../../pipelines/project';
import type { StepPlacement } from '../../pipelines/spec';
import {
  isStoppedRun,
  progressQuery,
  type ControlActivities,
  type RetrainInput,
  type RunResult,
  type StoppedRunResult,
  type TrainActivities,
} from '../../workflows/api';
import { retrainWorkflow } from '../../workflows/retrain';
import { sliceSpec } from '../helpers/specs';
import { uniqueName, useTimeSkipping, withWorker } from './time-skipping';

/**
 * User steps in the retrain workflow on the time-skipping server: the workflow and the step activities
 * (activities/steps.ts, around real StepDefinitions) run for real, Gantry's stage activities are in-memory fakes.
 */

const env = useTimeSkipping();

const dataset = {
  source: 'fashion-mnist',
  fingerprint: 'f'.repeat(64),
  task: 'classification',
  featureShape: [28, 28, 1],
  featureDtype: 'uint8',
  numClasses: 10,
  classNames: [],
  preprocessingUri: null,
  counts: { train: 1800, validation: 200, test: 500 },
  splits: {},
  statistics: { train: { count: 1800, labelHistogram: [180, 180, 180, 180, 180, 180, 180, 180, 180, 180] } },
  manifestUri: 'file:///datasets/f/manifest.json',
  drift: { drifted: false, reasons: [] },
  anomalies: [],
} as unknown as DatasetRef;

/** Gantry's stages in memory: each call is recorded by name. */
function fakeStages() {
  const calls: { name: string; input: any }[] = [];
  const record = (name: string, input: unknown) => calls.push({ name, input });
  const control: Partial<ControlActivities> = {
    ingest: async (input) => (record('ingest', input), dataset),
    evaluate: async (input) => {
      record('evaluate', input);
      return {
        candidate: { accuracy: 0.8, loss: 0.5, perClassAccuracy: [] },
        champion: null,
        blessed: true,
        reasons: ['PASS accuracy'],
        reportUri: 'file:///report.json',
        backend: { name: 'cpu' },
      } as any;
    },
    register: async (input) => (record('register', input), { version: 7 }),
    publish: async (input) => (record('publish', input), { publishedPath: '/models/m/7' }),
  };
  const train: Partial<TrainActivities> = {
    train: async (input) => {
      record('train', input);
      return {
        modelUri: 'file:///model',
        history: [{ epoch: 1, loss: 0.5, accuracy: 0.8, valLoss: 0.5, valAccuracy: 0.8, seconds: 1 }],
        attempt: 1,
        resumedFromEpoch: null,
        backend: { name: 'cpu' },
        execution: { mode: 'eager', reason: 'fake' },
        samplesPerSecond: 1000,
        seconds: 1,
      } as any;
    },
  };
  return { calls, activities: { ...control, ...train }, names: () => calls.map((c) => c.name) };
}

/** A step that records what it was told and returns `answer(context)`. */
function recordingStep(
  name: string,
  seen: { name: string; context: StepContext }[],
  answer: (context: StepContext) => Awaited<ReturnType<StepDefinition['run']>> = () => ({ data: { name } }),
): StepDefinition {
  return defineStep({
    name,
    async run(context) {
      seen.push({ name, context });
      return answer(context);
    },
  });
}

function input(taskQueue: string, steps: Partial<StepPlacement>[]): RetrainInput {
  const spec = sliceSpec();
  // No canary here: the deploy activities are another test's business.
  delete spec.deployment.rollout;
  spec.steps = steps.map((s) => ({ options: {}, ...s }) as StepPlacement);
  return { spec, taskQueues: { control: taskQueue, train: taskQueue }, deploymentPrefix: taskQueue };
}

async function run(
  activities: object,
  steps: Partial<StepPlacement>[],
): Promise<{ result: RunResult | StoppedRunResult; progress: Awaited<ReturnType<typeof progressOf>> }> {
  const taskQueue = uniqueName('steps');
  return withWorker(env(), taskQueue, activities, async () => {
    const handle = await env().client.workflow.start(retrainWorkflow, {
      taskQueue,
      workflowId: uniqueName('run'),
      args: [input(taskQueue, steps)],
    });
    const result = await handle.result();
    return { result, progress: await progressOf(handle) };
  });
}

function progressOf(handle: { query: (q: typeof progressQuery) => Promise<any> }) {
  return handle.query(progressQuery);
}

async function failureText(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  let text = '';
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e)
    text += ` ${e.message}`;
  return text;
}

describe('user steps in the retrain workflow', () => {
  it('runs each point’s steps in the spec’s order, telling each what the run has produced so far', async () => {
    const stages = fakeStages();
    const seen: { name: string; context: StepContext }[] = [];
    const definitions = ['a', 'a2', 'b', 'c', 'd', 'e', 'f'].map((n) =>
      recordingStep(n, seen, () => ({ data: { name: n, stagesBefore: stages.names() } })),
    );
    const { result, progress } = await run({ ...stages.activities, ...createStepActivities(definitions) }, [
      { name: 'f', at: 'after-rollout' },
      { name: 'a', at: 'after-ingest', options: { minRows: 10 } },
      { name: 'b', at: 'after-train' },
      { name: 'a2', at: 'after-ingest' },
      { name: 'c', at: 'after-evaluate' },
      { name: 'd', at: 'before-publish' },
      { name: 'e', at: 'before-rollout' },
    ]);

    expect(isStoppedRun(result)).toBe(false);
    const done = result as RunResult;
    expect(done.published).toBe(true);
    // Points in the flow's order; within a point, the spec's order.
    expect(done.steps!.map((s) => `${s.name}@${s.at}`)).toEqual([
      'a@after-ingest',
      'a2@after-ingest',
      'b@after-train',
      'c@after-evaluate',
      'd@before-publish',
      'e@before-rollout',
      'f@after-rollout',
    ]);
    // Each step ran after the stages its point follows and before the next ones.
    const before = Object.fromEntries(done.steps!.map((s) => [s.name, s.data.stagesBefore]));
    expect(before).toEqual({
      a: ['ingest'],
      a2: ['ingest'],
      b: ['ingest', 'train'],
      c: ['ingest', 'train', 'evaluate'],
      d: ['ingest', 'train', 'evaluate', 'register'],
      e: ['ingest', 'train', 'evaluate', 'register', 'publish'],
      f: ['ingest', 'train', 'evaluate', 'register', 'publish'],
    });

    const context = Object.fromEntries(seen.map((s) => [s.name, s.context]));
    expect(context.a!.options).toEqual({ minRows: 10 });
    expect(context.a!.at).toBe('after-ingest');
    expect(context.a!.pipeline).toBe('fashion-mnist');
    expect(context.a!.outputs.dataset).toMatchObject({
      fingerprint: dataset.fingerprint,
      manifestUri: dataset.manifestUri,
      counts: dataset.counts,
      statistics: dataset.statistics,
    });
    expect(context.a!.outputs.training).toBeUndefined();
    expect(Object.keys(context.a2!.outputs.steps)).toEqual(['a']);
    expect(context.b!.outputs.training).toMatchObject({ modelUri: 'file:///model', samplesPerSecond: 1000 });
    expect(context.c!.outputs.evaluation).toMatchObject({ blessed: true, reportUri: 'file:///report.json' });
    expect(context.c!.outputs.version).toBeUndefined();
    expect(context.d!.outputs.version).toBe(7);
    expect(context.e!.outputs.publishedPath).toBe('/models/m/7');
    expect(Object.keys(context.f!.outputs.steps)).toEqual(['a', 'a2', 'b', 'c', 'd', 'e']);

    // The version's lineage gets what the steps before register returned.
    const register = stages.calls.find((c) => c.name === 'register')!.input;
    expect(register.steps.map((s: { name: string }) => s.name)).toEqual(['a', 'a2', 'b', 'c']);
    expect(progress.steps.map((s: { name: string }) => s.name)).toEqual(['a', 'a2', 'b', 'c', 'd', 'e', 'f']);
    expect(progress.status).toBe('completed');
  });

  it('a stop ends the run cleanly: later stages skipped, nothing published, the reason in the result', async () => {
    const stages = fakeStages();
    const seen: { name: string; context: StepContext }[] = [];
    const gate = recordingStep('quality', seen, (context) => ({
      data: { rows: context.outputs.dataset!.counts.train },
      stop: `only ${context.outputs.dataset!.counts.train} rows, fewer than ${context.options.minRows}`,
    }));
    const never = recordingStep('never', seen);
    const { result, progress } = await run({ ...stages.activities, ...createStepActivities([gate, never]) }, [
      { name: 'quality', at: 'after-ingest', options: { minRows: 5000 } },
      { name: 'never', at: 'after-ingest' },
    ]);

    expect(isStoppedRun(result)).toBe(true);
    const stopped = result as StoppedRunResult;
    expect(stopped.stopped).toEqual({ step: 'quality', at: 'after-ingest', reason: 'only 1800 rows, fewer than 5000' });
    expect(stopped).toMatchObject({ status: 'stopped', published: false, version: null, train: null });
    expect(stopped.steps).toEqual([{ name: 'quality', at: 'after-ingest', data: { rows: 1800 } }]);
    expect(stages.names()).toEqual(['ingest']);
    expect(seen.map((s) => s.name)).toEqual(['quality']);
    expect(progress.status).toBe('stopped');
    expect(progress.stages).toMatchObject({ ingest: 'done', train: 'skipped', publish: 'skipped' });
  });

  it('a gate before publish leaves the version registered and unpublished', async () => {
    const stages = fakeStages();
    const fairness = defineStep({
      name: 'fairness',
      run: async (context) =>
        context.outputs.evaluation!.blessed ? { data: { gap: 0.2 }, stop: 'accuracy gap 0.2 between groups' } : {},
    });
    const { result } = await run({ ...stages.activities, ...createStepActivities([fairness]) }, [
      { name: 'fairness', at: 'before-publish' },
    ]);
    const stopped = result as StoppedRunResult;
    expect(stopped.stopped.reason).toBe('accuracy gap 0.2 between groups');
    expect(stopped).toMatchObject({ version: 7, published: false, publishedPath: null });
    expect(stopped.evaluation?.blessed).toBe(true);
    expect(stages.names()).toEqual(['ingest', 'train', 'evaluate', 'register']);
  });

  it("retries a failing step up to its placement's retries, then fails the run naming the step", async () => {
    let attempts = 0;
    const flaky = defineStep({
      name: 'flaky',
      run: async () => {
        attempts += 1;
        if (attempts < 3) throw new Error(`flake ${attempts}`);
        return { data: { attempts } };
      },
    });
    const { result } = await run({ ...fakeStages().activities, ...createStepActivities([flaky]) }, [
      { name: 'flaky', at: 'after-train', retries: 2 },
    ]);
    expect((result as RunResult).steps).toEqual([{ name: 'flaky', at: 'after-train', data: { attempts: 3 } }]);

    attempts = 0;
    const stages = fakeStages();
    const taskQueue = uniqueName('steps');
    const message = await withWorker(
      env(),
      taskQueue,
      { ...stages.activities, ...createStepActivities([flaky]) },
      async () =>
        failureText(
          env().client.workflow.execute(retrainWorkflow, {
            taskQueue,
            workflowId: uniqueName('run'),
            args: [input(taskQueue, [{ name: 'flaky', at: 'after-train', retries: 1 }])],
          }),
        ),
    );
    expect(attempts).toBe(2);
    expect(message).toContain('step flaky (after-train): flake 2');
    expect(stages.names()).toEqual(['ingest', 'train']);
  });

  it('refuses a result that is not small plain JSON at once, naming the step and the field', async () => {
    let attempts = 0;
    const bad = defineStep({
      name: 'bad',
      run: async () => {
        attempts += 1;
        return { data: { when: new Date(0) as unknown as string } };
      },
    });
    const huge = defineStep({ name: 'huge', run: async () => ({ data: { blob: 'x'.repeat(300_000) } }) });
    for (const [step, expected] of [
      ['bad', 'step "bad" returned an unusable result: data.when'],
      ['huge', 'step "huge" returned 300011 bytes of data, more than the 262144'],
    ] as const) {
      const taskQueue = uniqueName('steps');
      const message = await withWorker(
        env(),
        taskQueue,
        { ...fakeStages().activities, ...createStepActivities([bad, huge]) },
        async () =>
          failureText(
            env().client.workflow.execute(retrainWorkflow, {
              taskQueue,
              workflowId: uniqueName('run'),
              args: [input(taskQueue, [{ name: step, at: 'after-ingest', retries: 5 }])],
            }),
          ),
      );
      expect(message).toContain(expected);
    }
    // Not retried: the same code would return the same thing.
    expect(attempts).toBe(1);
  });

  it("runs a step on its placement's pool: the task queue of that pool, not the control pool's", async () => {
    const stages = fakeStages();
    const seen: { name: string; context: StepContext }[] = [];
    const onGpu = recordingStep('on-gpu', seen, () => ({ data: { pid: 'gpu-worker' } }));
    const taskQueue = uniqueName('steps');
    // The control worker has no step activities: only the `gpu` pool's worker can run the step.
    const gpuWorker = await Worker.create({
      connection: env().nativeConnection,
      taskQueue: `${taskQueue}-gpu`,
      workflowBundle: { codePath: inject('workflowBundlePath') },
      activities: createStepActivities([onGpu]),
    });
    const result = await gpuWorker.runUntil(
      withWorker(env(), taskQueue, stages.activities, () =>
        env().client.workflow.execute(retrainWorkflow, {
          taskQueue,
          workflowId: uniqueName('run'),
          args: [input(taskQueue, [{ name: 'on-gpu', at: 'after-evaluate', pool: 'gpu', timeout: '1m' }])],
        }),
      ),
    );
    expect((result as RunResult).steps).toEqual([
      { name: 'on-gpu', at: 'after-evaluate', data: { pid: 'gpu-worker' } },
    ]);
  });
});
