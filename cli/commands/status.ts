import { withClient } from '../../control/connect';
import { readRun } from '../../control/reads';
import type { RunTimings } from '../../workflows/timings-api';
import { UsageError } from '../errors';
import { timingLines } from '../timings';

/** A run's state: its progress while it runs, its result once it completed. */
export async function statusCommand(runId: string, options: { json?: boolean; replicas?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const read = await readRun(client, runId, { replicas: options.replicas });
    if (!read) throw new UsageError(`no run with id "${runId}"`);
    const { status, startTime, closeTime, progress, result, error, job } = read;
    if (options.replicas && !job)
      throw new UsageError(
        `run "${runId}" has no data-parallel train job (train.replicas = 1), or it has not started yet`,
      );
    const report = { runId, status, startTime, closeTime, progress, result, error, ...(job ? { job } : {}) };
    if (options.json) {
      console.log(JSON.stringify(report));
      return;
    }
    console.log(`run ${runId}: ${status} (started ${startTime.toISOString()})`);
    if (progress) {
      console.log(
        `stages: ${Object.entries(progress.stages)
          .map(([s, v]) => `${s}=${v}`)
          .join(' ')}`,
      );
      if (progress.train) {
        const t = progress.train;
        console.log(
          `train: epoch ${t.epoch}/${t.epochs} step ${t.step}/${t.stepsPerEpoch} loss ${t.loss.toFixed(4)} acc ` +
            `${t.accuracy.toFixed(4)} attempt ${t.attempt} on ${t.backend}`,
        );
      }
      if (progress.version !== null) console.log(`version: ${progress.version}`);
      if (progress.stopped)
        console.log(`STOPPED by step ${progress.stopped.step} (${progress.stopped.at}): ${progress.stopped.reason}`);
      if (progress.evaluation)
        console.log(`blessed: ${progress.evaluation.blessed}\n  ${progress.evaluation.reasons.join('\n  ')}`);
    }
    // The result's timings once the run completed (no worker needed to answer), else the progress's so far.
    const timings = (result as { timings?: RunTimings } | null)?.timings ?? progress?.timings;
    if (timings) for (const line of timingLines(timings)) console.log(line);
    if (job) {
      console.log(
        `train job: ${job.strategy}, attempt ${job.attempt}, ${job.phase}, ${job.worldSize ?? '?'} of ` +
          `${job.replicasWanted} replicas`,
      );
      for (const r of [...job.replicas].sort((a, b) => a.rank - b.rank)) {
        const p = r.progress;
        console.log(
          `  rank ${r.rank} (${r.identity}, ${r.host}:${r.port}): ` +
            (p
              ? `epoch ${p.epoch} step ${p.step}/${p.stepsPerEpoch} loss ${p.loss.toFixed(4)} acc ` +
                `${p.accuracy.toFixed(4)} ${Math.round(p.samplesPerSecond)} samples/s (job)`
              : 'joined, no step yet'),
        );
      }
      for (const a of job.attempts) console.log(`  attempt ${a.attempt} ended: ${a.error}`);
    }
    if (error) console.log(`error: ${error}`);
  });
}

export async function cancelCommand(runId: string): Promise<void> {
  await withClient(async (client) => {
    await client.workflow.getHandle(runId).cancel();
    console.log(`cancellation requested for ${runId}`);
  });
}
