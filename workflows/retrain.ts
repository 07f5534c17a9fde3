import {
  ActivityCancellationType,
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
import {
  deploymentPrefixOfRun,
  progressQuery,
  rolloutWorkflowId,
  trainJobWorkflowId,
  trainProgressSignal,
  type ControlActivities,
  type RetrainInput,
  type RolloutStatus,
  type RunProgress,
  type RunResult,
  type Stage,
  type TrainActivities,
  type TrainResult,
} from './api';
import { trainJobWorkflow } from './train-job';
import { rolloutWorkflow } from './rollout';

/**
 * The retrain pipeline as one durable workflow: ingest → train → evaluate → register → publish →
 * rollout (a canary child workflow that promotes the version or rolls it back).
 * Every step is an activity on its pool's task queue; only URIs, fingerprints and metrics pass
 * between them. A crash of any worker or of the server loses no finished step.
 */

export async function retrainWorkflow(input: RetrainInput): Promise<RunResult> {
  const { spec, taskQueues } = input;
  const runId = workflowInfo().workflowId;
  const control = proxyActivities<ControlActivities>({
    taskQueue: taskQueues.control,
    startToCloseTimeout: '30m',
    heartbeatTimeout: '2m',
    retry: { initialInterval: '1s', maximumAttempts: 5, nonRetryableErrorTypes: ['DatasetError', 'InvalidSpec'] },
  });
  const trainer = proxyActivities<TrainActivities>({
    taskQueue: taskQueues.train,
    startToCloseTimeout: '7d',
    heartbeatTimeout: spec.train.heartbeatTimeout,
    // A cancelled run waits until its trainer has really stopped, so no orphan keeps training.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '30s',
      maximumAttempts: spec.train.maxAttempts,
      nonRetryableErrorTypes: ['DatasetError', 'InvalidSpec', 'TrainingDiverged'],
    },
  });

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
    dataset: null,
    evaluation: null,
    version: null,
    rolloutId: null,
    rollout: null,
    error: null,
  };
  setHandler(progressQuery, () => progress);
  setHandler(trainProgressSignal, (update) => {
    // A lost attempt's last signals can land after its successor's first ones: newer attempts win,
    // and within one attempt the furthest step does.
    const current = progress.train;
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
    try {
      const result = await run();
      progress.stages[name] = 'done';
      return result;
    } catch (error) {
      if (isCancellation(error)) {
        progress.stages[name] = 'cancelled';
        progress.status = 'cancelled';
        throw error;
      }
      progress.stages[name] = 'failed';
      progress.status = 'failed';
      const cause =
        (error instanceof ActivityFailure || error instanceof ChildWorkflowFailure) && error.cause
          ? error.cause
          : (error as Error);
      progress.error = `${name}: ${cause.message}`;
      throw ApplicationFailure.create({
        message: progress.error,
        type: `${name}Failed`,
        nonRetryable: true,
        cause: error as Error,
      });
    }
  }

  const dataset = await stage('ingest', () => control.ingest({ runId, spec }));
  progress.dataset = {
    fingerprint: dataset.fingerprint,
    counts: dataset.counts,
    drifted: dataset.drift.drifted,
    driftReasons: dataset.drift.reasons,
  };

  // One replica on one device is a plain trainer; anything more is a data-parallel job: a child
  // workflow that is its replicas' rendezvous and restarts lost attempts (workflows/train-job.ts).
  const distributed = spec.train.replicas > 1 || spec.train.strategy !== 'mirrored';
  const trained: TrainResult = await stage('train', () =>
    distributed
      ? executeChild(trainJobWorkflow, {
          workflowId: trainJobWorkflowId(runId),
          args: [{ runId, spec, dataset, taskQueue: taskQueues.train }],
        })
      : trainer.train({ runId, spec, dataset }),
  );

  const evaluation = await stage('evaluate', () =>
    control.evaluate({ runId, spec, dataset, modelUri: trained.modelUri }),
  );
  progress.evaluation = {
    blessed: evaluation.blessed,
    reasons: evaluation.reasons,
    candidate: evaluation.candidate,
    champion: evaluation.champion,
  };

  const { version } = await stage('register', () =>
    control.register({ runId, spec, datasetFingerprint: dataset.fingerprint, trained, evaluation }),
  );
  progress.version = version;

  let publishedPath: string | null = null;
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

  progress.stage = null;
  progress.status = 'completed';
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
    testAccuracy: evaluation.candidate.accuracy,
    testLoss: evaluation.candidate.loss,
    champion: evaluation.champion
      ? { version: evaluation.champion.version, testAccuracy: evaluation.champion.metrics.accuracy }
      : null,
    reasons: evaluation.reasons,
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
  };
}
