import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { StepOutputs } from '../pipelines/project';
import type { StepPlacement, StepPoint } from '../pipelines/spec';
import {
  datasetStepOutputs,
  deploymentPrefixOfRun,
  progressQuery,
  stepActivityType,
  rolloutWorkflowId,
  trainJobWorkflowId,
  trainProgressSignal,
  type RetrainInput,
  type RetrainOutcome,
  type RolloutStatus,
  type RunProgress,
  type RunResult,
  type Stage,
  type StepActivityInput,
  type StepActivityResult,
  type StepRecord,
  type StopRecord,
  type StoppedRunResult,
  type TrainResult,
} from './api';
import { recordEpoch } from './curve';
import { controlActivities, trainActivities } from './stage-activities';
import type { RunTimings, StageTiming, Timed } from './timings-api';
import { trainJobWorkflow } from './train-job';
import { rolloutWorkflow } from './rollout';

/**
 * The retrain pipeline as one durable workflow: ingest → train → evaluate → register → publish →
 * rollout (a canary child workflow that promotes the version or rolls it back).
 * Every step is an activity on its pool's task queue; only URIs, fingerprints and metrics pass
 * between them. A crash of any worker or of the server loses no finished step.
 *
 * The spec's user steps run at their points, in the spec's order: after-ingest, after-train, after-evaluate,
 * before-publish (after register, whether or not the version will be published), before-rollout (after publish,
 * whether or not a rollout follows) and after-rollout (last). Each is an activity on its pool's task queue and sees
 * what the run has produced so far; a step that stops the run ends it here, as a result, not a failure.
 */

type StepActivities = Record<string, (input: StepActivityInput) => Promise<StepActivityResult>>;

/** A placement's settings when the submitter did not fill them in from the step's definition. */
const STEP_DEFAULTS = { pool: 'control', timeout: '10m', retries: 3 } as const;

export async function retrainWorkflow(input: RetrainInput): Promise<RetrainOutcome> {
  const { spec, taskQueues } = input;
  const runId = workflowInfo().workflowId;
  const control = controlActivities(taskQueues.control);
  const trainer = trainActivities(taskQueues.train, spec);

  const progress: RunProgress = {
    runId,
    pipeline: spec.name,
    model: spec.model.name,
    status: 'running',
    stage: null,
    stages: {
      ingest: 'pending',
      train: 'pending',
      evaluate: 'pending',
      register: 'pending',
      publish: 'pending',
      rollout: 'pending',
    },
    train: null,
    curve: [],
    dataset: null,
    evaluation: null,
    version: null,
    rolloutId: null,
    rollout: null,
    error: null,
  };
  // Workflow time (Date.now() is the SDK's deterministic clock here); the activities add their own view.
  const timings: RunTimings = { totalMs: 0, stages: [] };
  const runStarted = workflowInfo().runStartTime.getTime();
  progress.timings = timings;
  const timed = (entry: StageTiming) => {
    timings.stages.push(entry);
    timings.totalMs = Date.now() - runStarted;
  };
  setHandler(progressQuery, () => progress);
  setHandler(trainProgressSignal, (update) => {
    // A lost attempt's last signals can land after its successor's first ones: newer attempts win,
    // and within one attempt the furthest step does.
    const current = progress.train;
    if (update.lastEpoch && (!current || update.attempt >= current.attempt))
      recordEpoch(progress.curve!, update.lastEpoch, update.attempt);
    if (
      !current ||
      update.attempt > current.attempt ||
      (update.attempt === current.attempt && update.globalStep >= current.globalStep)
    ) {
      progress.train = { ...update, epochs: spec.train.epochs };
    }
  });

  async function stage<T>(name: Stage, run: () => Promise<T>): Promise<T> {
    progress.stage = name;
    progress.stages[name] = 'running';
    const started = Date.now();
    try {
      const result = await run();
      progress.stages[name] = 'done';
      if (result === null || typeof result !== 'object' || !('timing' in result)) {
        timed({ stage: name, wallMs: Date.now() - started });
        return result;
      }
      // The activity's measurement goes to the timings, not on to the next stage's input.
      const { timing, ...rest } = result as T & Timed;
      timed({ stage: name, wallMs: Date.now() - started, ...timing });
      return rest as T;
    } catch (error) {
      progress.stages[name] = isCancellation(error) ? 'cancelled' : 'failed';
      throw failure(name, error);
    }
  }

  /** The run's end when a stage or a step (`what`) fails: the cancellation itself, or a failure naming `what`. */
  function failure(what: string, error: unknown): unknown {
    if (isCancellation(error)) {
      progress.status = 'cancelled';
      return error;
    }
    progress.status = 'failed';
    const cause =
      (error instanceof ActivityFailure || error instanceof ChildWorkflowFailure) && error.cause
        ? error.cause
        : (error as Error);
    progress.error = `${what}: ${cause.message}`;
    return ApplicationFailure.create({
      message: progress.error,
      // A stage's failure type names the stage, as before steps existed.
      type: what.startsWith('step ') ? 'StepFailed' : `${what}Failed`,
      nonRetryable: true,
      cause: error as Error,
    });
  }

  // Runs whose history predates steps have specs without them.
  const placements: StepPlacement[] = spec.steps ?? [];
  const steps: StepRecord[] = [];
  const outputs: StepOutputs = { steps: {} };

  function stepQueue(pool: string): string {
    if (pool === 'control') return taskQueues.control;
    if (pool === 'train') return taskQueues.train;
    return `${deploymentPrefixOfRun(input)}-${pool}`;
  }

  /** The placements at `at`, one after another; the first that stops the run ends the loop with its reason. */
  async function runSteps(at: StepPoint): Promise<StopRecord | null> {
    for (const placement of placements) {
      if (placement.at !== at) continue;
      const activities = proxyActivities<StepActivities>({
        taskQueue: stepQueue(placement.pool ?? STEP_DEFAULTS.pool),
        startToCloseTimeout: placement.timeout ?? STEP_DEFAULTS.timeout,
        retry: {
          initialInterval: '1s',
          maximumAttempts: (placement.retries ?? STEP_DEFAULTS.retries) + 1,
          nonRetryableErrorTypes: ['InvalidStepResult', 'InvalidSpec'],
        },
      });
      const label = `step ${placement.name} (${at})`;
      progress.step = label;
      let result: StepActivityResult;
      const started = Date.now();
      try {
        result = await activities[stepActivityType(placement.name)]!({
          runId,
          pipeline: spec.name,
          at,
          spec,
          options: placement.options ?? {},
          outputs,
        });
      } catch (error) {
        throw failure(label, error);
      }
      progress.step = null;
      timed({ stage: label, wallMs: Date.now() - started });
      steps.push({ name: placement.name, at, data: result.data });
      progress.steps = steps.map(({ name, at }) => ({ name, at }));
      outputs.steps[placement.name] = result.data;
      if (result.stop !== null) return { step: placement.name, at, reason: result.stop };
    }
    return null;
  }

  /** What a step that stopped the run leaves: the stages it spared are skipped, the result says why. */
  function stopped(stop: StopRecord, ran: Partial<Pick<StoppedRunResult, 'train' | 'evaluation' | 'version'>>) {
    for (const name of Object.keys(progress.stages) as Stage[])
      if (progress.stages[name] === 'pending') progress.stages[name] = 'skipped';
    progress.stage = null;
    progress.status = 'stopped';
    progress.stopped = stop;
    timings.totalMs = Date.now() - runStarted;
    const result: StoppedRunResult = {
      runId,
      pipeline: spec.name,
      model: spec.model.name,
      status: 'stopped',
      stopped: stop,
      steps,
      dataset: { fingerprint: dataset.fingerprint, counts: dataset.counts, drift: dataset.drift },
      train: ran.train ?? null,
      evaluation: ran.evaluation ?? null,
      version: ran.version ?? null,
      published: publishedPath !== null,
      publishedPath,
      timings,
    };
    return result;
  }
  let publishedPath: string | null = null;

  // A study's best trial comes trained: its dataset and model are the run's, and only the stages after train run.
  const { pretrained } = input;
  const dataset = await stage('ingest', async () => pretrained?.dataset ?? control.ingest({ runId, spec }));
  outputs.dataset = datasetStepOutputs(dataset);
  progress.dataset = {
    fingerprint: dataset.fingerprint,
    counts: dataset.counts,
    drifted: dataset.drift.drifted,
    driftReasons: dataset.drift.reasons,
  };
  const afterIngest = await runSteps('after-ingest');
  if (afterIngest) return stopped(afterIngest, {});

  // One replica on one device is a plain trainer; anything more is a data-parallel job: a child
  // workflow that is its replicas' rendezvous and restarts lost attempts (workflows/train-job.ts).
  const distributed = spec.train.replicas > 1 || spec.train.strategy !== 'mirrored';
  const trained: TrainResult = await stage('train', () =>
    pretrained
      ? Promise.resolve(pretrained.trained)
      : distributed
        ? executeChild(trainJobWorkflow, {
            workflowId: trainJobWorkflowId(runId),
            args: [{ runId, spec, dataset, taskQueue: taskQueues.train }],
          })
        : trainer.train({ runId, spec, dataset }),
  );
  outputs.training = {
    modelUri: trained.modelUri,
    history: trained.history,
    samplesPerSecond: trained.samplesPerSecond,
  };
  const trainSummary = {
    modelUri: trained.modelUri,
    samplesPerSecond: trained.samplesPerSecond,
    seconds: trained.seconds,
  };
  const afterTrain = await runSteps('after-train');
  if (afterTrain) return stopped(afterTrain, { train: trainSummary });

  const evaluation = await stage('evaluate', () =>
    control.evaluate({ runId, spec, dataset, modelUri: trained.modelUri }),
  );
  progress.evaluation = {
    blessed: evaluation.blessed,
    reasons: evaluation.reasons,
    candidate: evaluation.candidate,
    champion: evaluation.champion,
  };
  outputs.evaluation = {
    blessed: evaluation.blessed,
    reasons: evaluation.reasons,
    candidate: { ...evaluation.candidate },
    reportUri: evaluation.reportUri,
  };
  const afterEvaluate = await runSteps('after-evaluate');
  if (afterEvaluate) return stopped(afterEvaluate, { train: trainSummary, evaluation: progress.evaluation });

  const { version } = await stage('register', () =>
    control.register({
      runId,
      spec,
      datasetFingerprint: dataset.fingerprint,
      trained,
      evaluation,
      // Only a run with steps sends them: the activity's input stays as it was for every other run.
      ...(steps.length ? { steps } : {}),
      ...(input.study ? { study: input.study } : {}),
    }),
  );
  progress.version = version;
  outputs.version = version;
  const ran = { train: trainSummary, evaluation: progress.evaluation, version };
  const beforePublish = await runSteps('before-publish');
  if (beforePublish) return stopped(beforePublish, ran);

  const rolloutSpec = spec.deployment.rollout?.enabled ? spec.deployment.rollout : null;
  if (evaluation.blessed && spec.deployment.publish) {
    publishedPath = (
      await stage('publish', () =>
        control.publish({
          runId,
          spec,
          version,
          modelUri: trained.modelUri,
          evaluation,
          moveAlias: rolloutSpec === null,
          dataset: {
            task: dataset.task,
            featureShape: dataset.featureShape,
            classNames: dataset.classNames,
            preprocessingUri: dataset.preprocessingUri,
          },
        }),
      )
    ).publishedPath;
  } else {
    progress.stages.publish = 'skipped';
  }
  outputs.publishedPath = publishedPath;
  const beforeRollout = await runSteps('before-rollout');
  if (beforeRollout) return stopped(beforeRollout, ran);

  let rollout: RolloutStatus | null = null;
  if (publishedPath !== null && rolloutSpec) {
    const workflowId = rolloutWorkflowId(deploymentPrefixOfRun(input), spec.model.name);
    progress.rolloutId = workflowId;
    rollout = await stage('rollout', () =>
      executeChild(rolloutWorkflow, {
        workflowId,
        taskQueue: taskQueues.control,
        // Cancelling the run cancels the rollout, which hands the traffic back to the champion.
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        args: [
          {
            model: spec.model.name,
            candidate: version,
            champion: evaluation.champion?.version ?? null,
            championAlias: spec.deployment.alias,
            spec: rolloutSpec,
            runId,
          },
        ],
      }),
    );
    progress.rollout = rollout.outcome && { result: rollout.outcome.result, reasons: rollout.outcome.reasons };
  } else {
    progress.stages.rollout = 'skipped';
  }
  outputs.rollout = progress.rollout;
  const afterRollout = await runSteps('after-rollout');
  if (afterRollout) return stopped(afterRollout, ran);

  progress.stage = null;
  progress.status = 'completed';
  timings.totalMs = Date.now() - runStarted;
  return {
    runId,
    pipeline: spec.name,
    model: spec.model.name,
    version,
    blessed: evaluation.blessed,
    published: publishedPath !== null,
    publishedPath,
    rollout: rollout?.outcome
      ? { result: rollout.outcome.result, reasons: rollout.outcome.reasons, decisions: rollout.decisions.length }
      : null,
    promoted: publishedPath !== null && (rollout === null || rollout.outcome?.result === 'promoted'),
    task: evaluation.candidate.task,
    metrics: evaluation.candidate.metrics,
    testAccuracy: evaluation.candidate.accuracy,
    testLoss: evaluation.candidate.loss,
    champion: evaluation.champion
      ? {
          version: evaluation.champion.version,
          testAccuracy: evaluation.champion.metrics.accuracy,
          metrics: evaluation.champion.metrics.metrics,
        }
      : null,
    reasons: evaluation.reasons,
    ...(placements.length ? { steps } : {}),
    backend: trained.backend.name,
    backends: { train: trained.backend, evaluate: evaluation.backend },
    dataset: { fingerprint: dataset.fingerprint, counts: dataset.counts, drift: dataset.drift },
    train: {
      epochs: trained.history.length ? trained.history.at(-1)!.epoch : 0,
      history: trained.history,
      attempt: trained.attempt,
      resumedFromEpoch: trained.resumedFromEpoch,
      samplesPerSecond: trained.samplesPerSecond,
      seconds: trained.seconds,
      // Absent from results of runs that predate graph execution.
      execution: trained.execution ?? { mode: 'eager' },
      distribution: trained.distribution ?? { strategy: 'mirrored', replicas: 1 },
    },
    timings,
  };
}
