import { proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import {
  batchPredictProgressQuery,
  MAX_BAD_ROW_SAMPLES,
  type BatchPredictActivities,
  type BatchPredictInput,
  type BatchPredictProgress,
  type BatchPredictResult,
  type ShardResult,
} from './batch-predict-api';

/**
 * `gantry predict`: a published version's predictions over a whole input, durably. The control pool plans row
 * ranges (shards); the shards run in parallel on the job's pool, each writing its rows to a file of its own
 * (temp + rename, so a shard is on disk whole or not at all) and heartbeating its progress; the control pool then
 * concatenates them in input order into the output (temp + rename) and removes them. A worker killed mid-shard is
 * replaced by a retry of that shard alone; a shard already on disk is not computed again, so the output is the same
 * bytes whatever was interrupted.
 */

/** Shards scheduled at once: enough to keep every worker of a pool busy, few enough to keep the history small. */
const MAX_SHARDS_IN_FLIGHT = 32;

const control = proxyActivities<BatchPredictActivities>({
  startToCloseTimeout: '1h',
  heartbeatTimeout: '2m',
  retry: { initialInterval: '1s', maximumAttempts: 5, nonRetryableErrorTypes: ['PredictRefused', 'DatasetError'] },
});

export async function batchPredictWorkflow(job: BatchPredictInput): Promise<BatchPredictResult> {
  const progress: BatchPredictProgress = { phase: 'planning', rows: 0, shards: 0, shardsDone: 0, rowsDone: 0, bad: 0 };
  setHandler(batchPredictProgressQuery, () => progress);
  const plan = await control.planBatchPredict(job);
  Object.assign(progress, { phase: 'predicting', rows: plan.rows, shards: plan.shards.length });

  const { predictShard } = proxyActivities<BatchPredictActivities>({
    taskQueue: job.shardTaskQueue,
    startToCloseTimeout: '2h',
    heartbeatTimeout: job.heartbeatTimeout ?? '1m',
    retry: {
      initialInterval: '1s',
      maximumAttempts: 10,
      nonRetryableErrorTypes: ['PredictRefused', 'DatasetError', 'BadRow'],
    },
  });
  const results = new Array<ShardResult>(plan.shards.length);
  // A shard that fails (a bad row under `fail`) stops new shards; those running finish, and the job fails with the
  // first failure in input order: every shard before it was scheduled, so that is the input's first bad row.
  const failures = new Map<number, unknown>();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < plan.shards.length && failures.size === 0) {
      const shard = plan.shards[next++]!;
      try {
        const result = await predictShard({ job, plan: { kind: plan.kind, workDir: plan.workDir }, shard });
        results[shard.index] = result;
        progress.shardsDone += 1;
        progress.rowsDone += shard.end - shard.start;
        progress.bad += result.bad;
      } catch (error) {
        failures.set(shard.index, error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(MAX_SHARDS_IN_FLIGHT, plan.shards.length) }, lane));
  if (failures.size > 0) throw failures.get(Math.min(...failures.keys()));

  progress.phase = 'assembling';
  const assembled = await control.assemblePredictions({ job, plan });
  progress.phase = 'done';
  const bad = results.reduce((sum, r) => sum + r.bad, 0);
  return {
    jobId: workflowInfo().workflowId,
    model: job.model,
    version: job.version,
    input: job.input,
    kind: plan.kind,
    output: job.output,
    format: job.format,
    rows: plan.rows,
    predicted: results.reduce((sum, r) => sum + r.predicted, 0),
    bad,
    badRows: results.flatMap((r) => r.badRows).slice(0, MAX_BAD_ROW_SAMPLES),
    rejects: assembled.rejects,
    shards: plan.shards.length,
    shardsComputed: results.filter((r) => r.computed).length,
    bytes: assembled.bytes,
  };
}
