import {
  ApplicationFailure,
  condition,
  executeChild,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { DatasetRef } from '../data/ingest';
import { durationMs } from '../pipelines/duration';
import type { StepOutputs } from '../pipelines/project';
import type { RolloutSpec, StepPoint } from '../pipelines/spec';
import {
  approvalQuery,
  datasetStepOutputs,
  approveUpdate,
  deploymentPrefixOfRun,
  rolloutWorkflowId,
  stepActivityType,
  trainJobWorkflowId,
  type ApprovalState,
  type EvaluationResult,
  type ManualRequest,
  type RetrainInput,
  type RetrainOutcome,
  type RolloutStatus,
  type StepActivityInput,
  type StepActivityResult,
  type StepRecord,
  type TrainResult,
} from './api';
import { retrainWorkflow } from './retrain';
import { rolloutWorkflow } from './rollout';
import { controlActivities, trainActivities } from './stage-activities';
import { trainJobWorkflow } from './train-job';

/**
 * Gantry's stages for a user's own Temporal workflow, for a shape a pipeline spec cannot express (two candidates
 * trained side by side, a person's approval before publishing, a stage repeated until a check holds). Each is a
 * function to call from workflow code: the stage runs as the same activity or child workflow the retrain pipeline
 * uses, on the same pools, so only URIs and metrics pass through the user's workflow.
 *
 *   export async function reviewed(run: PipelineRun) {
 *     const dataset = await ingest(run);
 *     const trained = await train(run, dataset);
 *     const evaluation = await evaluate(run, dataset, trained);
 *     const { version } = await register(run, { dataset, trained, evaluation });
 *     if ((await approval(`publish v${version}`, { timeout: '1d' })).approved)
 *       await publish(run, { version, trained, evaluation });
 *   }
 *
 * A PipelineRun is what `gantry run <workflow> --pipeline <name>` hands the workflow: the spec and the task queues.
 * The run id every stage records is the user workflow's own id.
 */

export { datasetStepOutputs };

/** The spec the stages run and where Gantry's pools are: `gantry run --pipeline` builds it. */
export type PipelineRun = RetrainInput;

function runIdOf(): string {
  return workflowInfo().workflowId;
}

/** Reads the spec's data source, checks and splits it, and writes the dataset's shards (control pool). */
export function ingest(run: PipelineRun): Promise<DatasetRef> {
  return controlActivities(run.taskQueues.control).ingest({ runId: runIdOf(), spec: run.spec });
}

/**
 * Trains the spec's model on the dataset: one trainer activity, or the data-parallel train job (a child workflow)
 * when the spec asks for replicas or another strategy.
 */
export function train(run: PipelineRun, dataset: DatasetRef): Promise<TrainResult> {
  const { spec, taskQueues } = run;
  const runId = runIdOf();
  const distributed = spec.train.replicas > 1 || spec.train.strategy !== 'mirrored';
  return distributed
    ? executeChild(trainJobWorkflow, {
        workflowId: trainJobWorkflowId(runId),
        args: [{ runId, spec, dataset, taskQueue: taskQueues.train }],
      })
    : trainActivities(taskQueues.train, spec).train({ runId, spec, dataset });
}

/** Scores the trained model on the test split and judges it against the spec's gates and the champion. */
export function evaluate(run: PipelineRun, dataset: DatasetRef, trained: TrainResult): Promise<EvaluationResult> {
  return controlActivities(run.taskQueues.control).evaluate({
    runId: runIdOf(),
    spec: run.spec,
    dataset,
    modelUri: trained.modelUri,
  });
}

/** Registers the model as the model's next version, with its lineage (and the steps' data, if given). */
export function register(
  run: PipelineRun,
  stage: { dataset: DatasetRef; trained: TrainResult; evaluation: EvaluationResult; steps?: StepRecord[] },
): Promise<{ version: number }> {
  return controlActivities(run.taskQueues.control).register({
    runId: runIdOf(),
    spec: run.spec,
    datasetFingerprint: stage.dataset.fingerprint,
    trained: stage.trained,
    evaluation: stage.evaluation,
    ...(stage.steps?.length ? { steps: stage.steps } : {}),
  });
}

/**
 * Writes a registered version to the model repository. The deployment alias moves to it at once unless
 * `moveAlias` is false (a rollout will decide); by default it moves when the spec has no rollout.
 */
export function publish(
  run: PipelineRun,
  stage: { version: number; trained: TrainResult; evaluation: EvaluationResult; moveAlias?: boolean },
): Promise<{ publishedPath: string }> {
  return controlActivities(run.taskQueues.control).publish({
    runId: runIdOf(),
    spec: run.spec,
    version: stage.version,
    modelUri: stage.trained.modelUri,
    evaluation: stage.evaluation,
    moveAlias: stage.moveAlias ?? !run.spec.deployment.rollout?.enabled,
  });
}

/**
 * Takes a published version to production through a canary (the rollout child workflow): it promotes the version
 * or rolls it back. `spec` defaults to the pipeline's `deployment.rollout`.
 */
export function rollout(
  run: PipelineRun,
  stage: { version: number; champion: number | null; spec?: RolloutSpec },
): Promise<RolloutStatus> {
  const spec = stage.spec ?? run.spec.deployment.rollout;
  if (!spec)
    throw ApplicationFailure.create({
      message: `pipeline ${run.spec.name} has no deployment.rollout: pass the rollout's spec to rollout()`,
      type: 'InvalidSpec',
      nonRetryable: true,
    });
  const model = run.spec.model.name;
  return executeChild(rolloutWorkflow, {
    workflowId: rolloutWorkflowId(deploymentPrefixOfRun(run), model),
    taskQueue: run.taskQueues.control,
    // Ending the user's workflow cancels the rollout, which hands the traffic back to the champion.
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
    args: [
      {
        model,
        candidate: stage.version,
        champion: stage.champion,
        championAlias: run.spec.deployment.alias,
        spec,
        runId: runIdOf(),
      },
    ],
  });
}

/** The whole retrain pipeline (with its steps) as a child workflow; its id is this workflow's id + `/pipeline`. */
export function runPipeline(run: PipelineRun, options: { workflowId?: string } = {}): Promise<RetrainOutcome> {
  return executeChild(retrainWorkflow, {
    workflowId: options.workflowId ?? `${runIdOf()}/pipeline`,
    taskQueue: run.taskQueues.control,
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
    args: [run],
  });
}

/**
 * Runs one of the project's steps (defineStep) as its activity, the way the pipeline places it: on its pool, with
 * its timeout and retries (the step's definition is not visible to workflow code, so they are given here).
 */
export function step(
  run: PipelineRun,
  name: string,
  options: {
    at: StepPoint;
    outputs?: StepOutputs;
    options?: Record<string, unknown>;
    pool?: string;
    /** A duration such as `5m`. */
    timeout?: string;
    retries?: number;
  },
): Promise<StepActivityResult> {
  const pool = options.pool ?? 'control';
  const taskQueue =
    pool === 'control'
      ? run.taskQueues.control
      : pool === 'train'
        ? run.taskQueues.train
        : `${deploymentPrefixOfRun(run)}-${pool}`;
  const activities = proxyActivities<Record<string, (input: StepActivityInput) => Promise<StepActivityResult>>>({
    taskQueue,
    startToCloseTimeout: (options.timeout ?? '10m') as Duration,
    retry: {
      initialInterval: '1s',
      maximumAttempts: (options.retries ?? 3) + 1,
      nonRetryableErrorTypes: ['InvalidStepResult'],
    },
  });
  return activities[stepActivityType(name)]!({
    runId: runIdOf(),
    pipeline: run.spec.name,
    at: options.at,
    spec: run.spec,
    options: options.options ?? {},
    outputs: options.outputs ?? { steps: {} },
  });
}

/**
 * Waits for a person: `gantry approve <workflowId>` (the `approve` Update) approves, with an optional reason. After
 * `timeout` it gives up and says so; what that means (publish anyway, skip) is the workflow's choice. The `approval`
 * Query shows what is waiting. One approval at a time; an approve sent while nothing waits is refused.
 */
export async function approval(
  subject: string,
  options: { timeout: string },
): Promise<{ approved: boolean; reason: string | null }> {
  const state: ApprovalState = { subject, phase: 'waiting', reason: null };
  setHandler(approvalQuery, () => state);
  setHandler(
    approveUpdate,
    (request: ManualRequest) => {
      state.phase = 'approved';
      state.reason = request?.reason ?? null;
      return state;
    },
    {
      validator: (_request: ManualRequest) => {
        if (state.phase !== 'waiting')
          throw new Error(`nothing is waiting for approval (last: ${state.subject}, ${state.phase})`);
      },
    },
  );
  const approved = await condition(() => state.phase === 'approved', durationMs(options.timeout));
  if (!approved) state.phase = 'timed-out';
  return { approved, reason: state.reason };
}
