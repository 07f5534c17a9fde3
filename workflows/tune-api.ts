import { defineQuery } from '@temporalio/workflow';
import type { PipelineSpec } from '../pipelines/spec';
import type { RetrainOutcome } from './api';
import type { Params } from './tuning/space';
import type { TrialState } from './tuning/tuner';

/**
 * The contract of a hyperparameter study (workflows/tune.ts): its input, ids, status query and result. A client
 * (`gantry tune`, the dashboard) imports this module, never the workflow. Names and id formats are recorded in
 * histories: they never change.
 */

export const TUNE_WORKFLOW_TYPE = 'tuneWorkflow';

export interface TuneInput {
  /** The pipeline's spec with its `tuning` section; each trial trains it with the trial's params set. */
  spec: PipelineSpec;
  taskQueues: { control: string; train: string };
  deploymentPrefix?: string;
}

/** A readable, unique study id: `<pipeline>-tune-<UTC time>-<random>`. */
export function tuneStudyId(pipeline: string, startedAt: Date, suffix: string): string {
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${pipeline}-tune-${stamp}-${suffix}`;
}

/** A trial's run id: where its checkpoints and model live (`runs/<id>/`), so a promoted trial resumes from them. */
export function trialRunId(studyId: string, trial: number): string {
  return `${studyId}/trial-${trial}`;
}

/** The child retrain run that evaluates, registers and publishes the best trial's model. */
export function studyRunId(studyId: string): string {
  return `${studyId}/best`;
}

/** What a registered version's lineage says of the study that picked it. */
export interface StudyLineage {
  studyId: string;
  trial: number;
  params: Params;
  algorithm: string;
  objective: { metric: string; goal: 'min' | 'max' };
  /** The objective's validation value of the trial's last epoch. */
  metric: number;
  epochs: number;
  /** Trials the study ran. */
  trials: number;
}

export interface TrialStatus {
  trial: number;
  /** Its checkpoints and model are under runs/<runId>/. */
  runId: string;
  params: Params;
  /** `waiting`: ASHA may still promote it; `stopped`: stopped early (see stoppedReason). */
  state: TrialState;
  /** Epochs trained, and the epoch its current training goes to. */
  epochs: number;
  targetEpochs: number;
  /** The objective on the validation split after its last epoch (what trials are ranked by), and its best. */
  metric: number | null;
  bestMetric: number | null;
  /** The objective after each epoch. */
  values: number[];
  /** Trainings (activities or jobs) the trial took: one per rung, never more for a retried attempt. */
  trainings: number;
  /** Attempts of those trainings: more than `trainings` when a trainer was lost and its attempt retried. */
  attempts: number;
  /** The last training's resume point when it restarted from a checkpoint (a promotion or a retried attempt). */
  resumedFromEpoch: number | null;
  stoppedReason: string | null;
  error: string | null;
  /** Live, while it trains on a single trainer. */
  progress: { epoch: number; step: number; stepsPerEpoch: number; loss: number; attempt: number } | null;
}

export interface StudyBest {
  trial: number;
  params: Params;
  metric: number;
  epochs: number;
}

export interface StudyStatus {
  studyId: string;
  pipeline: string;
  model: string;
  status: 'ingesting' | 'running' | 'registering' | 'completed' | 'failed';
  algorithm: string;
  objective: { metric: string; goal: 'min' | 'max' };
  budget: { trials: number; epochs: number | null };
  parallelism: number;
  /** Epochs trained by all trials so far. */
  epochsTrained: number;
  trials: TrialStatus[];
  best: StudyBest | null;
  /** The retrain run that registers the best trial, once it started. */
  runId: string | null;
  /** The registered version of the best trial, once registered. */
  version: number | null;
  error: string | null;
}

export interface StudyResult extends StudyStatus {
  status: 'completed';
  best: StudyBest;
  /** The best trial's run: evaluation, registration, publication (and rollout) as any run's. */
  run: RetrainOutcome;
}

export const studyStatusQuery = defineQuery<StudyStatus>('studyStatus');
