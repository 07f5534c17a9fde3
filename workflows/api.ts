import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { DatasetRef } from '../data/ingest';
import type { DriftReport } from '../data/drift';
import type { PipelineSpec, RolloutSpec, StepPoint } from '../pipelines/spec';
import type { StepOutputs } from '../pipelines/project';
import type { BackendReport } from '../engine/backend';
import type { ExecutionReport } from '../training/trainer';
import type { EpochMetrics } from '../training/checkpoint';
import type { ModelMetrics } from '../training/evaluate';
import type { MetricName } from '../training/metrics';
import type { StepProgress } from '../training/trainer';
import type { Judgement, ShadowWindow, VersionWindow } from './canary-analysis';
import type { EpochPoint } from './curve';
import type { RunTimings, Timed } from './timings-api';
import type { ExperimentVerdict } from './experiment-analysis';
import type { ApplyReport, DesiredServing, ServingLayout } from './serving-desired';
import type { StudyLineage } from './tune-api';

/**
 * The contract between the workflows, the activities they run and the clients that start and steer
 * them (the CLI, tests): workflow ids, every signal, query and update definition, and the types that
 * cross a workflow's or an activity's boundary. Activities import this module, never a workflow
 * module, so a train worker loads no workflow code: this module imports only `@temporalio/workflow`'s
 * define* helpers at run time (every other import is a type). Clients still name a workflow function
 * when they start one. The names of workflows, signals, queries and updates and the id formats are
 * recorded in histories: they never change.
 */

// ---- workflow ids ----

/** The model's registry: one long-lived entity workflow per model, scoped by the deployment prefix. */
export function registryWorkflowId(deploymentPrefix: string, model: string): string {
  return `${deploymentPrefix}-registry:${model}`;
}

/** The model name of a registry workflow id of this deployment, or undefined for any other id. */
export function modelOfRegistryWorkflowId(deploymentPrefix: string, workflowId: string): string | undefined {
  const prefix = registryWorkflowId(deploymentPrefix, '');
  return workflowId.startsWith(prefix) ? workflowId.slice(prefix.length) : undefined;
}

/** One rollout per model at a time: a second start finds the running one. */
export function rolloutWorkflowId(deploymentPrefix: string, model: string): string {
  return `${deploymentPrefix}-rollout:${model}`;
}

/** One experiment per model at a time, like a rollout. */
export function experimentWorkflowId(deploymentPrefix: string, model: string): string {
  return `${deploymentPrefix}-experiment:${model}`;
}

/** The data-parallel training job of a retrain run (its child workflow). */
export function trainJobWorkflowId(runId: string): string {
  return `${runId}/train-job`;
}

/** A readable, unique retrain run id: the pipeline, the UTC start time and a random suffix the caller draws. */
export function retrainRunId(pipeline: string, startedAt: Date, suffix: string): string {
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${pipeline}-${stamp}-${suffix}`;
}

/** The runs a schedule starts: Temporal appends the scheduled time, so each run gets its own id. */
export function scheduledRunWorkflowId(pipeline: string): string {
  return `${pipeline}-scheduled`;
}

/** The schedule that retrains a pipeline when `gantry schedule create` is given no id. */
export function retrainScheduleId(pipeline: string): string {
  return `retrain-${pipeline}`;
}

/** One import per workflow: `<prefix>-import:<model>:<suffix>`, also the version's lineage runId. */
export function importWorkflowId(deploymentPrefix: string, model: string, suffix: string): string {
  return `${deploymentPrefix}-import:${model}:${suffix}`;
}

/** The registry's workflow type, for callers that start it by name (a client must not load workflow code). */
export const REGISTRY_WORKFLOW_TYPE = 'registryWorkflow';
export type RegistryWorkflow = (input: RegistryInput) => Promise<void>;

// ---- the retrain workflow ----

export interface RetrainInput {
  spec: PipelineSpec;
  taskQueues: { control: string; train: string };
  /** Scopes the registry and rollout workflow ids (GANTRY_TASK_QUEUE_PREFIX); derived from the queues when absent. */
  deploymentPrefix?: string;
  /** A model trained already (a study's best trial): the run skips ingest and train and goes on from them. */
  pretrained?: { dataset: DatasetRef; trained: TrainResult };
  /** The study that picked the model: recorded in the version's lineage. */
  study?: StudyLineage;
}

/**
 * The deployment prefix a retrain run scopes its rollout's id with. Runs started before the input
 * carried it (their histories still replay) take it from the control queue, `<prefix>-control`.
 */
export function deploymentPrefixOfRun({ deploymentPrefix, taskQueues }: RetrainInput): string {
  return deploymentPrefix ?? taskQueues.control.replace(/-control$/, '');
}

export const STAGES = ['ingest', 'train', 'evaluate', 'register', 'publish', 'rollout'] as const;
export type Stage = (typeof STAGES)[number];
export type StageStatus = 'pending' | 'running' | 'done' | 'skipped' | 'failed' | 'cancelled';

export interface RunProgress {
  runId: string;
  pipeline: string;
  model: string;
  /** `stopped`: a user step ended the run early (see `stopped`). */
  status: 'running' | 'completed' | 'failed' | 'cancelled' | 'stopped';
  stage: Stage | null;
  /** The user step running now, e.g. "step min-rows (after-ingest)" (absent from runs before steps existed). */
  step?: string | null;
  /** The user steps that have run. */
  steps?: { name: string; at: StepPoint }[];
  stopped?: StopRecord | null;
  stages: Record<Stage, StageStatus>;
  train: (TrainProgress & { epochs: number }) | null;
  /** One point per finished epoch (workflows/curve.ts); absent from runs started before it was kept. */
  curve?: EpochPoint[];
  dataset: {
    fingerprint: string;
    counts: { train: number; validation: number; test: number };
    drifted: boolean;
    driftReasons: string[];
  } | null;
  evaluation: Pick<EvaluationResult, 'blessed' | 'reasons' | 'candidate' | 'champion'> | null;
  version: number | null;
  /** The rollout child's workflow id while it runs (query it for the steps and decisions). */
  rolloutId: string | null;
  rollout: { result: 'promoted' | 'rolled-back'; reasons: string[] } | null;
  error: string | null;
  /** Each finished stage's and step's time so far (absent from runs before timings existed). */
  timings?: RunTimings;
}

export const progressQuery = defineQuery<RunProgress>('progress');
/** Sent by a plain trainer (and by rank 0 of a job) to its retrain run. */
export const trainProgressSignal = defineSignal<[TrainProgress]>('trainProgress');

// ---- user steps (pipelines/project.ts defineStep; activities/steps.ts) ----

/** A user step's activity type: one per registered step, stable because histories record it. */
export function stepActivityType(step: string): string {
  return `step:${step}`;
}

/** What the retrain workflow (or a user's workflow) hands a step's activity. */
export interface StepActivityInput {
  runId: string;
  pipeline: string;
  at: StepPoint;
  spec: PipelineSpec;
  options: Record<string, unknown>;
  outputs: StepOutputs;
}

/** What a step is told of the run's dataset: URIs and summaries, not the whole reference. */
export function datasetStepOutputs(dataset: DatasetRef): NonNullable<StepOutputs['dataset']> {
  return {
    fingerprint: dataset.fingerprint,
    manifestUri: dataset.manifestUri,
    counts: dataset.counts,
    statistics: dataset.statistics,
    drift: dataset.drift,
    // References written before anomalies existed lack them.
    anomalies: dataset.anomalies ?? [],
  };
}

/** A step's checked answer: plain JSON data, and a reason when it stops the run. */
export interface StepActivityResult {
  data: Record<string, unknown>;
  stop: string | null;
}

/** One step that ran, as the run's result and the version's lineage record it. */
export interface StepRecord {
  name: string;
  at: StepPoint;
  data: Record<string, unknown>;
}

/** Why a run ended early: a step said so. The run is not a failure, and nothing after the step happened. */
export interface StopRecord {
  step: string;
  at: StepPoint;
  reason: string;
}

/**
 * A retrain run that a user step stopped: what had happened by then. The stages after the step did not run, so
 * the fields of a completed run (RunResult) that they would have filled are absent or null here.
 */
export interface StoppedRunResult {
  runId: string;
  pipeline: string;
  model: string;
  status: 'stopped';
  stopped: StopRecord;
  steps: StepRecord[];
  dataset: { fingerprint: string; counts: { train: number; validation: number; test: number }; drift: DriftReport };
  /** Set when the step ran after training / evaluation / register. */
  train: { modelUri: string; samplesPerSecond: number; seconds: number } | null;
  evaluation: Pick<EvaluationResult, 'blessed' | 'reasons' | 'candidate' | 'champion'> | null;
  version: number | null;
  published: boolean;
  publishedPath: string | null;
  /** Where the run's time went, stage by stage (absent from runs before timings existed). */
  timings?: RunTimings;
}

/** What `retrainWorkflow` returns: a completed run, or one a step stopped. */
export type RetrainOutcome = RunResult | StoppedRunResult;

export function isStoppedRun(result: RetrainOutcome): result is StoppedRunResult {
  return (result as StoppedRunResult).status === 'stopped';
}

/** The completed run, for callers whose pipeline has no step that may stop it; throws, saying why, otherwise. */
export function completedRun(result: RetrainOutcome): RunResult {
  if (!isStoppedRun(result)) return result;
  const { step, at, reason } = result.stopped;
  throw new Error(`run ${result.runId} was stopped by step ${step} (${at}): ${reason}`);
}

// ---- approvals in users' workflows (workflows/stages.ts) ----

export interface ApprovalState {
  /** What the workflow waits to have approved, e.g. "publish v3 of penguins". */
  subject: string | null;
  phase: 'idle' | 'waiting' | 'approved' | 'timed-out';
  reason: string | null;
}

/**
 * `gantry approve <workflowId>` on a user's workflow: the same Update name as a rollout's approval (`approve`), so
 * one command serves both.
 */
export const approveUpdate = defineUpdate<ApprovalState, [ManualRequest]>('approve');
export const approvalQuery = defineQuery<ApprovalState>('approval');

// ---- the data-parallel train job ----

export interface TrainJobInput extends TrainInput {
  taskQueue: string;
}

export interface JoinRequest {
  jobId: string;
  jobAttempt: number;
  replica: number;
  host: string;
  port: number;
  /** The worker that runs the replica (for `status`). */
  identity: string;
}

export interface JoinAnswer {
  rank: number;
  worldSize: number;
  peers: { rank: number; host: string; port: number }[];
}

export interface ReplicaState {
  replica: number;
  rank: number;
  host: string;
  port: number;
  identity: string;
  progress: TrainProgress | null;
  /** This rank's finished epochs in the current attempt (absent from jobs started before it was kept). */
  curve?: EpochPoint[];
}

export interface JobState {
  jobId: string;
  strategy: string;
  replicasWanted: number;
  attempt: number;
  phase: 'rendezvous' | 'training' | 'completed' | 'failed';
  worldSize: number | null;
  replicas: ReplicaState[];
  /** Why earlier attempts ended. */
  attempts: { attempt: number; worldSize: number | null; error: string }[];
}

/** A replica's rendezvous: it joins with its address and gets its rank and the peers once all have joined. */
export const joinJobUpdate = defineUpdate<JoinAnswer, [JoinRequest]>('joinJob');
export const replicaProgressSignal =
  defineSignal<[{ jobAttempt: number; rank: number; progress: TrainProgress }]>('replicaProgress');
export const jobStateQuery = defineQuery<JobState>('jobState');

// ---- the canary rollout ----

export interface RolloutInput {
  model: string;
  candidate: number;
  /** The champion when the rollout starts; null = nothing to compare against, promote at once. */
  champion: number | null;
  championAlias: string;
  spec: RolloutSpec;
  /** The retrain run that produced the candidate, when there is one. */
  runId?: string;
}

export type RolloutPhase = 'starting' | 'shadow' | 'canary' | 'awaiting-approval' | 'promoted' | 'rolled-back';

export interface RolloutDecision {
  at: string;
  phase: 'shadow' | 'canary' | 'approval' | 'final';
  /** 1-based step, for canary decisions. */
  step: number | null;
  percent: number;
  action: 'start' | 'analyse' | 'pass' | 'extend' | 'breach' | 'approved' | 'timeout' | 'promote' | 'rollback';
  message: string;
  judgement?: Judgement;
  canary?: VersionWindow;
  champion?: VersionWindow | null;
}

export interface RolloutStatus {
  model: string;
  candidate: number;
  champion: number | null;
  phase: RolloutPhase;
  step: number | null;
  steps: number;
  percent: number;
  extensions: number;
  /** The latest analysis (every interval), and every decision that changed something. */
  latest: RolloutDecision | null;
  decisions: RolloutDecision[];
  /** Every analysis of the current rollout (the most recent 200): what each decision was made on. */
  analyses: RolloutDecision[];
  outcome: { result: 'promoted' | 'rolled-back'; reasons: string[]; at: string } | null;
  /** The spec's thresholds the windows are judged against (absent from rollouts started before it was kept). */
  thresholds?: RolloutSpec['thresholds'];
  /** The spec's steps, in order (absent from rollouts started before it was kept). */
  plan?: { percent: number; bake: string }[];
}

export interface ManualRequest {
  reason?: string;
}

export const rolloutStatusQuery = defineQuery<RolloutStatus>('rolloutStatus');
export const approveRolloutUpdate = defineUpdate<RolloutStatus, [ManualRequest]>('approve');
export const promoteRolloutUpdate = defineUpdate<RolloutStatus, [ManualRequest]>('promoteNow');
export const rollbackRolloutUpdate = defineUpdate<RolloutStatus, [ManualRequest]>('rollbackNow');

// ---- the A/B experiment ----

export interface ExperimentInput {
  model: string;
  arms: { version: number; weight: number }[];
  duration: string;
  championAlias: string;
  /** The champion when it starts (kept loaded so the end is instant); null when none. */
  champion: number | null;
  /** Significance level of the whole test (Bonferroni-corrected over the comparisons). */
  alpha: number;
  /** Labelled predictions each arm needs before a winner can be named. */
  minFeedback: number;
  /** How often the arms' metrics are read for `experiment status`. */
  analysisInterval: string;
}

export interface ExperimentStatus {
  model: string;
  arms: { version: number; weight: number }[];
  phase: 'running' | 'finished' | 'cancelled';
  startedAt: string | null;
  endsAt: string | null;
  /** Each arm's traffic since the start (updated every analysis interval). */
  windows: Record<string, VersionWindow>;
  verdict: ExperimentVerdict | null;
  stoppedEarly: boolean;
}

export const experimentStatusQuery = defineQuery<ExperimentStatus>('experimentStatus');
/** Ends the experiment now and decides on the feedback gathered so far. */
export const stopExperimentUpdate = defineUpdate<ExperimentStatus, [{ reason?: string }]>('stopExperiment');

// ---- the model registry ----

export interface VersionLineage {
  runId: string;
  datasetFingerprint: string;
  /** The whole pipeline spec the version was trained from. */
  spec: unknown;
  parentVersion: number | null;
  gitCommit: string | null;
  backend: string;
  /** What the run's user steps before register returned (absent from versions before steps existed). */
  steps?: StepRecord[];
  /** Where an imported version came from (`gantry models import`); absent from trained versions. */
  source?: ImportSource;
  /** The hyperparameter study whose best trial this is (`gantry tune`); absent from other versions. */
  study?: StudyLineage;
}

/** The lineage of an imported version: no training run made it; `runId` is the import workflow's id. */
export interface ImportSource {
  kind: 'import';
  /** The folder it was copied from (absolute, on the worker that copied it). */
  path: string;
  format: ImportFormat;
  signature: string;
  importedAt: string;
  /** The dataset whose test split it was evaluated on, or null when it was not evaluated. */
  evaluatedOn: string | null;
  /** Why it was not evaluated (null when it was). */
  unevaluatedReason: string | null;
}

export type ImportFormat = 'saved_model' | 'tfjs';

export interface ModelVersion {
  version: number;
  artifactUri: string;
  /** Null for an imported version that could not be evaluated (its lineage's source says why). */
  metrics: {
    testAccuracy: number;
    testLoss: number;
    perClassAccuracy: number[];
    /** Absent on versions registered before tasks: those are classifiers. */
    task?: 'classification' | 'regression';
    /** The task's test metrics by name (accuracy, auc, logLoss; rmse, mae, r2). */
    values?: Partial<Record<MetricName, number>>;
  } | null;
  lineage: VersionLineage;
  blessed: boolean;
  reasons: string[];
  status: 'registered' | 'published';
  /** Set when a rollout or a person rolled this version back, with why. */
  rolledBack?: { at: string; reasons: string[] } | null;
  /** Where the model repository holds it, once published. */
  publishedPath: string | null;
  registeredAt: string;
  publishedAt: string | null;
}

/** One decision about the model's traffic, kept in the registry (and in the history that made it). */
export interface RegistryEvent {
  at: string;
  kind: 'published' | 'promoted' | 'rolled-back' | 'rollout' | 'experiment' | 'serving';
  version: number | null;
  /** The workflow that made it (a rollout, an experiment) or "manual". */
  by: string;
  message: string;
  details?: unknown;
}

/** Which workflow steers the model's traffic now: one rollout or experiment at a time. */
export interface TrafficOwner {
  id: string;
  kind: 'rollout' | 'experiment';
  version: number | null;
  since: string;
}

/**
 * The registry's state as its `state` query returns it and as it continues as new with. The
 * optional fields were added over time: a run continued from an older one may lack them.
 */
export interface RegistryState {
  model: string;
  versions: ModelVersion[];
  aliases: Record<string, number>;
  /** Which version each run registered: a retried register activity gets the same answer. */
  versionByRunId: Record<string, number>;
  /** The alias the servers' production traffic follows. */
  championAlias?: string;
  /** Earlier champions, oldest first: `rollback` with no target returns to the last of them. */
  championHistory?: number[];
  /** What every model server should serve for this model; reconciled until it holds. */
  serving?: DesiredServing | null;
  /** The last time the desired state was applied, per server. */
  lastApply?: ApplyReport | null;
  trafficOwner?: TrafficOwner | null;
  /** The most recent decisions, newest last (capped; the full record is the workflow history). */
  events?: RegistryEvent[];
}

export interface RegistryInput {
  model: string;
  /** How often the desired serving state is re-applied (a restarted server gets it back). */
  reconcileInterval?: string;
  /** Carried over by continue-as-new. */
  state?: RegistryState;
  /** Continue as new beyond this many history events (Temporal also suggests it on its own). */
  maxHistoryEvents?: number;
}

export interface RegisterRequest {
  artifactUri: string;
  metrics: ModelVersion['metrics'];
  lineage: VersionLineage;
  blessed: boolean;
  reasons: string[];
}

export interface PublishRequest {
  version: number;
  publishedPath: string;
  /** The alias to move to the version now; null when a rollout will decide (see workflows/rollout.ts). */
  alias: string | null;
}

/** Manual control and rollout outcomes. `owner` is the rollout / experiment workflow id when one calls. */
export interface PromoteRequest {
  version: number;
  reason?: string;
  owner?: string;
}
export interface RollbackRequest {
  /** Any earlier published version; default the champion before the current one. */
  to?: number;
  reason?: string;
  owner?: string;
}
export interface ClaimTrafficRequest {
  owner: string;
  kind: TrafficOwner['kind'];
  version: number | null;
}
export interface ReleaseTrafficRequest {
  owner: string;
  note?: string;
}
export interface SetServingRequest {
  owner: string;
  layout: ServingLayout;
  note: string;
}
export interface ConcludeRequest {
  owner: string;
  candidate: number;
  outcome: 'promoted' | 'rolled-back';
  reasons: string[];
  details?: unknown;
}
export interface RecordEventRequest {
  owner: string;
  kind: RegistryEvent['kind'];
  version: number | null;
  message: string;
  details?: unknown;
}
export interface ServingChange {
  serving: DesiredServing;
  apply: ApplyReport;
  champion: number | null;
}
export interface PublishResult {
  version: number;
  alias: string | null;
  previous: number | null;
}

export const registerVersionUpdate = defineUpdate<{ version: number }, [RegisterRequest]>('registerVersion');
export const publishVersionUpdate = defineUpdate<PublishResult, [PublishRequest]>('publishVersion');
export const promoteUpdate = defineUpdate<ServingChange, [PromoteRequest]>('promote');
export const rollbackUpdate = defineUpdate<ServingChange & { rolledBack: number | null }, [RollbackRequest]>(
  'rollback',
);
export const claimTrafficUpdate = defineUpdate<TrafficOwner, [ClaimTrafficRequest]>('claimTraffic');
/** The owner hands the traffic back: the champion alone serves again. */
export const releaseTrafficUpdate = defineUpdate<ServingChange | null, [ReleaseTrafficRequest]>('releaseTraffic');
export const setServingUpdate = defineUpdate<ServingChange, [SetServingRequest]>('setServing');
export const concludeUpdate = defineUpdate<ServingChange, [ConcludeRequest]>('conclude');
export const recordEventUpdate = defineUpdate<void, [RecordEventRequest]>('recordEvent');
export const registryStateQuery = defineQuery<RegistryState>('state');

// ---- the activities ----

/**
 * What the activities take and return. Everything here is plain JSON that Temporal records in
 * the workflow history: URIs, fingerprints and metrics, never tensors.
 */

export interface IngestInput {
  runId: string;
  spec: PipelineSpec;
}

export interface TrainInput {
  runId: string;
  spec: PipelineSpec;
  dataset: DatasetRef;
  /**
   * Stop after this epoch instead of train.epochs (a study's rung): the learning-rate schedule still spans
   * train.epochs, so training on from the checkpoint later follows the same path as one uninterrupted run.
   */
  untilEpoch?: number;
}

/**
 * Sent by the trainer to its workflow (a Signal) and in every heartbeat: the loop's step plus the
 * attempt's context.
 */
export interface TrainProgress extends StepProgress {
  /** The run (or study trial) training; absent from trainers before studies. */
  runId?: string;
  attempt: number;
  valAccuracy: number | null;
  /** Epochs that came from a checkpoint instead of being trained in this attempt. */
  resumedFromEpoch: number | null;
  samplesPerSecond: number;
  backend: string;
  /** The last finished epoch's metrics (validation included): the workflow keeps the run's curve from them. */
  lastEpoch?: EpochMetrics | null;
}

export interface Distribution {
  strategy: string;
  replicas: number;
  /** How the gradients were all-reduced: 'shared-memory' (replicas on one host), 'tcp', or 'none' (one replica). */
  allReduce?: string;
}

export interface TrainResult {
  /** Folder holding model.json and weights.bin. */
  modelUri: string;
  history: EpochMetrics[];
  attempt: number;
  resumedFromEpoch: number | null;
  backend: BackendReport;
  /** Whether each step ran as one TensorFlow graph or op by op, and why. */
  execution: ExecutionReport;
  samplesPerSecond: number;
  seconds: number;
  /** Present when a data-parallel job trained the model. */
  distribution?: Distribution;
}

export interface EvaluateInput {
  runId: string;
  spec: PipelineSpec;
  dataset: DatasetRef;
  modelUri: string;
}

export interface EvaluationResult {
  candidate: ModelMetrics;
  champion: { version: number; metrics: ModelMetrics } | null;
  blessed: boolean;
  /** Why it was or was not blessed, one line per gate. */
  reasons: string[];
  reportUri: string;
  backend: BackendReport;
}

export interface RegisterInput {
  runId: string;
  spec: PipelineSpec;
  datasetFingerprint: string;
  trained: TrainResult;
  evaluation: EvaluationResult;
  /** The user steps that ran before register: recorded in the version's lineage. */
  steps?: StepRecord[];
  /** The study that picked the model: recorded in the version's lineage. */
  study?: StudyLineage;
}

export interface PublishInput {
  runId: string;
  spec: PipelineSpec;
  version: number;
  modelUri: string;
  evaluation: EvaluationResult;
  /** Move the deployment alias to the version now (no rollout); absent = true. */
  moveAlias?: boolean;
  /**
   * What the served model takes and answers, from the DatasetRef: published as the version's
   * preprocessing.json (the dataset's own for tabular data, else built from the image shape and
   * classes). Absent (a run started before this field existed): the version has none.
   */
  dataset?: PublishedDataset;
}

export interface PublishedDataset {
  task: 'classification' | 'regression';
  featureShape: number[];
  classNames: string[];
  preprocessingUri: string | null;
}

export interface RunResult {
  runId: string;
  pipeline: string;
  model: string;
  version: number;
  blessed: boolean;
  published: boolean;
  publishedPath: string | null;
  /** The canary rollout's outcome, when the spec has one. */
  rollout?: { result: 'promoted' | 'rolled-back'; reasons: string[]; decisions: number } | null;
  /** Whether the version became the champion (published without a rollout, or promoted by it). */
  promoted?: boolean;
  task: 'classification' | 'regression';
  /** The candidate's test metrics of its task: accuracy, auc, logLoss (classification); rmse, mae, r2 (regression). */
  metrics: Partial<Record<MetricName, number>>;
  /** Classification (0 for a regression). */
  testAccuracy: number;
  /** Cross-entropy (classification) or mean squared error (regression). */
  testLoss: number;
  /** The champion as measured on this run's test split. */
  champion: { version: number; testAccuracy: number; metrics: Partial<Record<MetricName, number>> } | null;
  reasons: string[];
  /** What the run's user steps returned, in the order they ran (absent from runs before steps existed). */
  steps?: StepRecord[];
  /** The backend that trained the model (see `backends` for every stage). */
  backend: string;
  backends: { train: BackendReport; evaluate: BackendReport };
  dataset: { fingerprint: string; counts: { train: number; validation: number; test: number }; drift: DriftReport };
  train: {
    epochs: number;
    history: EpochMetrics[];
    attempt: number;
    resumedFromEpoch: number | null;
    samplesPerSecond: number;
    seconds: number;
    execution: ExecutionReport;
    distribution: Distribution;
  };
  /** Where the run's time went, stage by stage (absent from runs before timings existed). */
  timings?: RunTimings;
}

export interface ControlActivities extends DeployActivities {
  ingest(input: IngestInput): Promise<DatasetRef & Timed>;
  evaluate(input: EvaluateInput): Promise<EvaluationResult & Timed>;
  register(input: RegisterInput): Promise<{ version: number } & Timed>;
  publish(input: PublishInput): Promise<{ publishedPath: string } & Timed>;
}

/** What the servers measured for a model: a window since `since` (or since they started). */
export interface ServingMeasurement {
  takenAt: string;
  servers: { url: string; ok: boolean; error?: string }[];
  /** The servers' cumulative counters now: pass it back as `since` to measure the next window. */
  snapshot: unknown;
  versions: Record<string, VersionWindow>;
  shadow: Record<string, ShadowWindow>;
}

/** The light activities that join the registry to the model servers (control pool). */
export interface DeployActivities {
  /** Makes every configured server serve `desired` (idempotent: unchanged servers are only read). */
  applyServing(input: { model: string; desired: DesiredServing }): Promise<ApplyReport>;
  /** The REST URLs of the configured model servers. */
  servingServers(): Promise<string[]>;
  measureServing(input: { model: string; since: unknown }): Promise<ServingMeasurement>;
  /** Updates on the model's registry workflow (a workflow cannot send Updates itself). */
  claimTraffic(input: { model: string; request: ClaimTrafficRequest }): Promise<TrafficOwner>;
  releaseTraffic(input: { model: string; owner: string; note?: string }): Promise<ServingChange | null>;
  setServing(input: { model: string; request: SetServingRequest }): Promise<ServingChange>;
  conclude(input: { model: string; request: ConcludeRequest }): Promise<ServingChange>;
  recordEvent(input: { model: string; request: RecordEventRequest }): Promise<void>;
}

/** One replica of a data-parallel training job (workflows/train-job.ts). */
export interface ReplicaInput extends TrainInput {
  /** The job workflow's id: the rendezvous, and the job id every connection must present. */
  jobId: string;
  /** The job's attempt; a connection or join from another attempt is refused. */
  jobAttempt: number;
  /** Which of the attempt's replica activities this is (ranks are handed out at the rendezvous). */
  replica: number;
}

/** What a replica returns: rank 0 carries the trained model; the others only their part. */
export interface ReplicaResult {
  rank: number;
  worldSize: number;
  steps: number;
  trained: (TrainResult & Timed) | null;
}

export interface TrainActivities {
  train(input: TrainInput): Promise<TrainResult & Timed>;
  trainReplica(input: ReplicaInput): Promise<ReplicaResult>;
}

// ---- importing a model from elsewhere (workflows/import-model.ts) ----

export interface ImportModelInput {
  model: string;
  /** The folder to import (absolute): a SavedModel, or a tfjs layers model (model.json). */
  path: string;
  signature: string;
  /** A dataset fingerprint, a manifest URI or a run id; absent = the one the model's registry knows. */
  dataset?: string;
}

/** What the import's first activity found: the checks passed, and what will be copied. */
export interface ImportInspection {
  format: ImportFormat;
  signature: string;
  inputs: { key: string; dtype: string; shape: number[] | null }[];
  outputs: { key: string; dtype: string; shape: number[] | null }[];
  /** Relative paths and sizes of the files copied. */
  files: { name: string; bytes: number }[];
}

export interface ImportEvaluation {
  /** Null when the model was not evaluated (`reason` says why). */
  evaluation: Omit<EvaluationResult, 'backend'> | null;
  datasetFingerprint: string | null;
  reason: string | null;
  blessed: boolean;
  reasons: string[];
}

export interface ImportResult {
  model: string;
  version: number;
  importId: string;
  format: ImportFormat;
  signature: string;
  blessed: boolean;
  published: boolean;
  publishedPath: string | null;
  evaluated: boolean;
  reason: string | null;
  datasetFingerprint: string | null;
  metrics: ModelVersion['metrics'];
  champion: { version: number; metrics: Partial<Record<MetricName, number>> } | null;
  reasons: string[];
}

/** The import's activities (control pool): each safe to retry. */
export interface ImportActivities {
  inspectImport(input: { path: string; signature: string }): Promise<ImportInspection>;
  /** Copies the folder into the artifact store under imports/<importId>/ and returns its URI. */
  stageImport(input: {
    importId: string;
    path: string;
    inspection: ImportInspection;
  }): Promise<{ artifactUri: string }>;
  evaluateImport(input: {
    importId: string;
    model: string;
    artifactUri: string;
    inspection: ImportInspection;
    dataset?: string;
  }): Promise<ImportEvaluation>;
  registerImport(input: { model: string; request: RegisterRequest }): Promise<{ version: number }>;
  /** Writes the version into the model repository and marks it published (no alias moves). */
  publishImport(input: {
    importId: string;
    model: string;
    version: number;
    artifactUri: string;
    inspection: ImportInspection;
    evaluation: ImportEvaluation;
  }): Promise<{ publishedPath: string }>;
}
