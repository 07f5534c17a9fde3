import type { DatasetRef } from '../data/ingest';
import type { DriftReport } from '../data/drift';
import type { PipelineSpec } from '../pipelines/spec';
import type { BackendReport } from '../training/backend';
import type { ExecutionReport } from '../training/trainer';
import type { EpochMetrics } from '../training/checkpoint';
import type { ModelMetrics } from '../training/evaluate';
import type { StepProgress } from '../training/trainer';

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
  distribution?: { strategy: string; replicas: number };
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
}

export interface RunResult {
  runId: string;
  pipeline: string;
  model: string;
  version: number;
  blessed: boolean;
  published: boolean;
  publishedPath: string | null;
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
    distribution: { strategy: string; replicas: number };
  };
}

export interface ControlActivities {
  ingest(input: IngestInput): Promise<DatasetRef>;
  evaluate(input: EvaluateInput): Promise<EvaluationResult>;
  register(input: RegisterInput): Promise<{ version: number }>;
  publish(input: PublishInput): Promise<{ publishedPath: string }>;
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
