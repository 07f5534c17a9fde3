import type { DatasetRef } from '../data/ingest';
import type { DriftReport } from '../data/drift';
import type { PipelineSpec } from '../pipelines/spec';
import type { BackendReport } from '../training/backend';
import type { ExecutionReport } from '../training/trainer';
import type { EpochMetrics } from '../training/checkpoint';
import type { ModelMetrics } from '../training/evaluate';
import type { StepProgress } from '../training/trainer';
import type { ShadowWindow, VersionWindow } from './canary-analysis';
import type {
  ClaimTrafficRequest,
  ConcludeRequest,
  RecordEventRequest,
  ServingChange,
  SetServingRequest,
  TrafficOwner,
} from './registry';
import type { ApplyReport, DesiredServing } from './serving-desired';

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
}

/** Sent by the trainer to its workflow (a Signal) and in every heartbeat: the loop's step plus the attempt's context. */
export interface TrainProgress extends StepProgress {
  attempt: number;
  valAccuracy: number | null;
  /** Epochs that came from a checkpoint instead of being trained in this attempt. */
  resumedFromEpoch: number | null;
  samplesPerSecond: number;
  backend: string;
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
}

export interface PublishInput {
  runId: string;
  spec: PipelineSpec;
  version: number;
  modelUri: string;
  evaluation: EvaluationResult;
  /** Move the deployment alias to the version now (no rollout); absent = true. */
  moveAlias?: boolean;
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
  testAccuracy: number;
  testLoss: number;
  champion: { version: number; testAccuracy: number } | null;
  reasons: string[];
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
}

export interface ControlActivities extends DeployActivities {
  ingest(input: IngestInput): Promise<DatasetRef>;
  evaluate(input: EvaluateInput): Promise<EvaluationResult>;
  register(input: RegisterInput): Promise<{ version: number }>;
  publish(input: PublishInput): Promise<{ publishedPath: string }>;
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
  trained: TrainResult | null;
}

export interface TrainActivities {
  train(input: TrainInput): Promise<TrainResult>;
  trainReplica(input: ReplicaInput): Promise<ReplicaResult>;
}
