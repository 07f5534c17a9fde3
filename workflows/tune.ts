import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  condition,
  executeChild,
  isCancellation,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { PipelineSpec } from '../pipelines/spec';
import { trainProgressSignal, type TrainResult } from './api';
import { retrainWorkflow } from './retrain';
import { controlActivities, trainActivities } from './stage-activities';
import { trainJobWorkflow } from './train-job';
import {
  studyRunId,
  studyStatusQuery,
  trialRunId,
  type StudyLineage,
  type StudyResult,
  type StudyStatus,
  type TrialStatus,
  type TuneInput,
} from './tune-api';
import { objectiveValue } from './tuning/objective';
import { withParams } from './tuning/space';
import {
  bestTrial,
  createTuner,
  failTrial,
  finishTuner,
  lossOf,
  nextAction,
  reportTrial,
  tunerConfig,
  type TunerTrial,
} from './tuning/tuner';

/**
 * A hyperparameter study as one durable workflow. The dataset is ingested once; the tuner (workflows/tuning/, pure
 * code over a seeded generator kept here as state) picks each trial's params and how far it trains, and up to
 * `parallelism` trials train at once on the train pool, each as the train activity (or a data-parallel job) of its
 * own run id, so its checkpoints are its own: a lost trainer's retry resumes the trial from its last epoch, and an
 * ASHA promotion trains on from the rung's checkpoint. A finished trial is workflow state and never trains again.
 * The best trial's model then goes through evaluate → register → publish (→ rollout) as a child retrain run handed
 * the trained model, and its version's lineage names the study and the trial's params.
 *
 * History: each training is one activity (or child) plus its progress signals, about a dozen events per rung and
 * one signal a second while it trains. A study of hundreds of long trials would want continue-as-new with the
 * tuner's state; the trial counts `gantry tune` is for stay far below Temporal's limits without it.
 */
export async function tuneWorkflow(input: TuneInput): Promise<StudyResult> {
  const { taskQueues } = input;
  const tuning = input.spec.tuning;
  if (!tuning)
    throw ApplicationFailure.nonRetryable(`pipeline ${input.spec.name} has no tuning section`, 'InvalidSpec');
  const studyId = workflowInfo().workflowId;
  // A trial is a plain run of the spec with its params set: without the study's own section.
  const { tuning: _, ...base } = input.spec;
  const spec = base as PipelineSpec;
  const control = controlActivities(taskQueues.control);
  const trainer = trainActivities(taskQueues.train, spec);
  const config = tunerConfig(tuning, spec.train.epochs);
  const tuner = createTuner(tuning.seed);
  const objective = { metric: tuning.objective.metric, goal: config.goal };

  /** What the tuner does not keep: each trial's trainings, attempts, live progress and latest model. */
  const extras = new Map<number, Pick<TrialStatus, 'trainings' | 'attempts' | 'resumedFromEpoch' | 'progress'>>();
  const trained = new Map<number, TrainResult>();
  const status: StudyStatus = {
    studyId,
    pipeline: spec.name,
    model: spec.model.name,
    status: 'ingesting',
    algorithm: tuning.algorithm,
    objective,
    budget: { trials: config.trials, epochs: config.epochBudget },
    parallelism: tuning.parallelism,
    epochsTrained: 0,
    trials: [],
    best: null,
    runId: null,
    version: null,
    error: null,
  };
  const trialStatus = (t: TunerTrial): TrialStatus => {
    const extra = extras.get(t.trial);
    const losses = t.values.map((v) => lossOf(config, v));
    const bestIndex = losses.indexOf(Math.min(...losses));
    return {
      trial: t.trial,
      runId: trialRunId(studyId, t.trial),
      params: t.params,
      state: t.state,
      epochs: t.epochs,
      targetEpochs: t.target,
      metric: t.values.at(-1) ?? null,
      bestMetric: bestIndex >= 0 ? t.values[bestIndex]! : null,
      values: t.values,
      trainings: extra?.trainings ?? 0,
      attempts: extra?.attempts ?? 0,
      resumedFromEpoch: extra?.resumedFromEpoch ?? null,
      stoppedReason: t.stoppedReason,
      error: t.error,
      progress: t.state === 'running' ? (extra?.progress ?? null) : null,
    };
  };
  const snapshot = (): StudyStatus => {
    const best = bestTrial(config, tuner);
    return {
      ...status,
      epochsTrained: tuner.trials.reduce((sum, t) => sum + t.epochs, 0),
      trials: tuner.trials.map(trialStatus),
      best: best && { trial: best.trial, params: best.params, metric: best.values.at(-1)!, epochs: best.epochs },
    };
  };
  setHandler(studyStatusQuery, snapshot);
  setHandler(trainProgressSignal, (update) => {
    const trial = tuner.trials.find((t) => trialRunId(studyId, t.trial) === update.runId);
    const extra = trial && extras.get(trial.trial);
    if (!extra) return;
    // A lost attempt's last signals can land after its successor's first ones: the newer attempt wins.
    if (extra.progress && update.attempt < extra.progress.attempt) return;
    const { epoch, step, stepsPerEpoch, loss, attempt } = update;
    extra.progress = { epoch, step, stepsPerEpoch, loss, attempt };
  });

  const fail = (message: string, cause?: unknown) => {
    status.status = 'failed';
    status.error = message;
    return ApplicationFailure.create({
      message,
      type: 'StudyFailed',
      nonRetryable: true,
      ...(cause ? { cause: cause as Error } : {}),
    });
  };

  let dataset;
  try {
    dataset = await control.ingest({ runId: studyId, spec });
  } catch (error) {
    if (isCancellation(error)) throw error;
    throw fail(`ingest: ${describe(error)}`, error);
  }
  status.status = 'running';

  // One replica on one device is a plain trainer; anything more is a data-parallel job, as in a run.
  const distributed = spec.train.replicas > 1 || spec.train.strategy !== 'mirrored';
  const train = (trial: TunerTrial): Promise<TrainResult> => {
    const runId = trialRunId(studyId, trial.trial);
    const trialInput = { runId, spec: withParams(spec, trial.params), dataset, untilEpoch: trial.target };
    return distributed
      ? executeChild(trainJobWorkflow, {
          workflowId: `${runId}/train-job-${trial.target}`,
          args: [{ ...trialInput, taskQueue: taskQueues.train }],
        })
      : trainer.train(trialInput);
  };

  const finished: { trial: number; result?: TrainResult; error?: unknown }[] = [];
  let running = 0;
  for (;;) {
    while (running < tuning.parallelism) {
      const action = nextAction(config, tuner);
      if (!action) break;
      const { trial } = action;
      const extra = extras.get(trial.trial) ?? { trainings: 0, attempts: 0, resumedFromEpoch: null, progress: null };
      extra.trainings++;
      extra.progress = null;
      extras.set(trial.trial, extra);
      running++;
      train(trial).then(
        (result) => finished.push({ trial: trial.trial, result }),
        (error) => finished.push({ trial: trial.trial, error }),
      );
    }
    if (running === 0) break;
    await condition(() => finished.length > 0);
    for (const { trial, result, error } of finished.splice(0)) {
      running--;
      if (error !== undefined) {
        if (isCancellation(error)) throw error;
        failTrial(tuner, trial, describe(error));
        continue;
      }
      const extra = extras.get(trial)!;
      extra.attempts += result!.attempt;
      extra.resumedFromEpoch = result!.resumedFromEpoch;
      const values = result!.history.map((epoch) => objectiveValue(epoch, objective.metric));
      const missing = values.findIndex((v) => v === undefined);
      if (missing >= 0) {
        failTrial(tuner, trial, `epoch ${missing + 1} reported no validation ${objective.metric}`);
        continue;
      }
      trained.set(trial, result!);
      reportTrial(config, tuner, trial, values as number[]);
    }
  }
  finishTuner(config, tuner);

  const best = bestTrial(config, tuner);
  if (!best) {
    const first = tuner.trials.find((t) => t.error);
    throw fail(`every trial failed${first ? `; trial ${first.trial}: ${first.error}` : ''}`);
  }
  status.status = 'registering';
  status.runId = studyRunId(studyId);
  const study: StudyLineage = {
    studyId,
    trial: best.trial,
    params: best.params,
    algorithm: tuning.algorithm,
    objective,
    metric: best.values.at(-1)!,
    epochs: best.epochs,
    trials: tuner.trials.length,
  };
  let run;
  try {
    run = await executeChild(retrainWorkflow, {
      workflowId: status.runId,
      taskQueue: taskQueues.control,
      args: [
        {
          spec: withParams(spec, best.params),
          taskQueues,
          ...(input.deploymentPrefix !== undefined ? { deploymentPrefix: input.deploymentPrefix } : {}),
          pretrained: { dataset, trained: trained.get(best.trial)! },
          study,
        },
      ],
    });
  } catch (error) {
    if (isCancellation(error)) throw error;
    throw fail(`the best trial's run ${status.runId}: ${describe(error)}`, error);
  }
  status.version = run.version;
  status.status = 'completed';
  const final = snapshot();
  return { ...final, status: 'completed', best: final.best!, run };
}

/** The innermost message of an activity's or child's failure. */
function describe(error: unknown): string {
  let current = error as { message?: string; cause?: unknown };
  while ((current instanceof ActivityFailure || current instanceof ChildWorkflowFailure) && current.cause)
    current = current.cause as { message?: string; cause?: unknown };
  return current.message || String(error);
}
