import { defineQuery } from '@temporalio/workflow';

/**
 * The contract of `gantry predict`'s workflow (workflows/batch-predict.ts) with its activities and its client: a
 * published version's predictions over a whole file or folder, in shards of rows, written in input order. Only
 * small values cross it (paths, row ranges, counts, a few bad rows as samples): the rows stay in files.
 */

export const PREDICT_FORMATS = ['jsonl', 'csv', 'parquet'] as const;
export type PredictFormat = (typeof PREDICT_FORMATS)[number];
export const BAD_ROW_POLICIES = ['skip', 'fail'] as const;
export type BadRowPolicy = (typeof BAD_ROW_POLICIES)[number];

/** What an input holds, as the plan found it: IDX images, a folder of images, or one of the tabular formats. */
export type PredictInputKind = 'idx' | 'images' | 'csv' | 'jsonl' | 'json' | 'parquet' | 'arrow';

export interface BatchPredictInput {
  model: string;
  version: number;
  /** The version's folder in the model repository (the CLI resolved it through the registry). */
  versionDir: string;
  /** Absolute paths on the workers (one host, or a shared filesystem). */
  input: string;
  output: string;
  format: PredictFormat;
  onBadRow: BadRowPolicy;
  /** Rows per shard; the last shard takes the rest. */
  shardRows: number;
  /** The pool that runs the shards (`train` or `predict`); planning and assembling run on the control pool. */
  pool: string;
  /** The pool's task queue (the client resolves it: workflow code reads no environment). */
  shardTaskQueue: string;
  /** A shard's activity is retried elsewhere after this long without a heartbeat (default 1m). */
  heartbeatTimeout?: string;
  /** Tests and benches: a pause after each predicted batch, so a job lasts long enough to be interrupted. */
  batchDelayMs?: number;
}

export interface ShardRange {
  index: number;
  /** Rows [start, end) of the input, counted as its reader yields them (an unreadable row counts as one). */
  start: number;
  end: number;
}

export interface PredictPlan {
  kind: PredictInputKind;
  rows: number;
  shards: ShardRange[];
  /** The folder the shards write into (beside the output) and the assembly empties. */
  workDir: string;
}

/** A row that could not be predicted: where it is (`file:line`, `file#row`, an image's file) and why. */
export interface BadRow {
  where: string;
  reason: string;
}

export interface ShardInput {
  job: BatchPredictInput;
  plan: Pick<PredictPlan, 'kind' | 'workDir'>;
  shard: ShardRange;
}

export interface ShardResult {
  index: number;
  /** Rows predicted (written) and rows skipped as bad. */
  predicted: number;
  bad: number;
  /** The first bad rows (the shard's rejects file holds all of them). */
  badRows: BadRow[];
  /** False when the shard's output was already complete and nothing was recomputed. */
  computed: boolean;
}

export interface AssembleInput {
  job: BatchPredictInput;
  plan: PredictPlan;
}

export interface AssembleResult {
  bytes: number;
  /** Where every bad row is listed (one JSON object a line), or null when there were none. */
  rejects: string | null;
}

/** Heartbeat details of a shard's activity (`gantry predict --follow` shows them). */
export interface ShardHeartbeat {
  index: number;
  rowsDone: number;
  rows: number;
}

export interface BatchPredictActivities {
  planBatchPredict(job: BatchPredictInput): Promise<PredictPlan>;
  predictShard(input: ShardInput): Promise<ShardResult>;
  assemblePredictions(input: AssembleInput): Promise<AssembleResult>;
}

export interface BatchPredictProgress {
  phase: 'planning' | 'predicting' | 'assembling' | 'done';
  rows: number;
  shards: number;
  shardsDone: number;
  /** Rows of finished shards (predicted + bad). */
  rowsDone: number;
  bad: number;
}

export interface BatchPredictResult {
  jobId: string;
  model: string;
  version: number;
  input: string;
  kind: PredictInputKind;
  output: string;
  format: PredictFormat;
  rows: number;
  predicted: number;
  bad: number;
  /** The first bad rows, in input order. */
  badRows: BadRow[];
  rejects: string | null;
  shards: number;
  /** Shards computed by this run (a shard found complete on disk is not). */
  shardsComputed: number;
  bytes: number;
}

/** Bad rows a shard (and the job's result) carries as samples; the rejects file lists every one. */
export const MAX_BAD_ROW_SAMPLES = 20;

export const batchPredictProgressQuery = defineQuery<BatchPredictProgress>('batchPredictProgress');

/** A batch prediction job's workflow id: the deployment, the model and a stamp the caller draws. */
export function batchPredictWorkflowId(deploymentPrefix: string, model: string, stamp: string): string {
  return `${deploymentPrefix}-predict:${model}:${stamp}`;
}
