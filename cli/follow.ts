import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import type { Client, WorkflowHandle } from '@temporalio/client';
import {
  jobStateQuery,
  progressQuery,
  rolloutStatusQuery,
  STAGES,
  trainJobWorkflowId,
  type JobState,
  type RolloutDecision,
  type RunProgress,
} from '../workflows/api';
import { formatDecision } from './commands/rollout';
import { stageTimingLine } from './timings';

const POLL_MS = 500;

/**
 * Shows a run's progress until `done` settles: live bars on a terminal (stages, epochs, steps of
 * the current epoch), plain lines otherwise (CI logs, pipes); during the rollout stage, each
 * decision of the canary as it is made.
 */
export async function followRun(
  handle: WorkflowHandle,
  done: Promise<unknown>,
  stream: NodeJS.WriteStream = process.stderr,
  /** With a client: each replica of a data-parallel train job too (its job workflow's state). */
  replicas?: { client: Client },
): Promise<void> {
  const view = stream.isTTY ? new BarsView(stream) : new LinesView(stream);
  const rollout = new RolloutDecisions(handle);
  // A line per stage and step as it finishes, with its timings (runs before timings existed have none).
  let timingsShown = 0;
  const showTimings = (progress: RunProgress) => {
    const stages = progress.timings?.stages ?? [];
    for (const t of stages.slice(timingsShown)) view.note(`[${progress.runId}] took: ${stageTimingLine(t)}`);
    timingsShown = Math.max(timingsShown, stages.length);
  };
  let finished = false;
  done.then(
    () => (finished = true),
    () => (finished = true),
  );
  try {
    while (!finished) {
      try {
        const progress = await handle.query(progressQuery);
        view.update(progress);
        showTimings(progress);
        if (replicas && progress.stages.train !== 'pending')
          await showReplicas(view, replicas.client, handle.workflowId);
        if (progress.stage === 'rollout')
          for (const d of await rollout.next(progress)) view.decision(progress.runId, d);
      } catch {
        // Not answerable yet (no worker picked the first task) or already closed: try again.
      }
      await Promise.race([done.catch(() => undefined), sleep(POLL_MS)]);
    }
    try {
      const progress = await handle.query(progressQuery);
      // The decisions made since the last poll, the final one included.
      for (const d of await rollout.next(progress)) view.decision(progress.runId, d);
      view.update(progress);
      showTimings(progress);
      if (progress.timings && progress.status !== 'running')
        view.note(`[${progress.runId}] took: ${(progress.timings.totalMs / 1000).toFixed(2)} s in all`);
      if (replicas) await showReplicas(view, replicas.client, handle.workflowId);
    } catch {
      // A finished workflow still answers queries while a worker is up; nothing to add otherwise.
    }
  } finally {
    view.stop();
  }
}

/** The run's rollout child's decisions not shown yet (its id and candidate come from the run's progress). */
class RolloutDecisions {
  private shown = 0;
  constructor(private readonly handle: WorkflowHandle) {}

  async next(progress: RunProgress): Promise<RolloutDecision[]> {
    if (!progress.rolloutId || progress.version === null) return [];
    // The id is the model's, reused by every rollout: until this run's child has started it
    // names the previous rollout, whose candidate is another version.
    const status = await this.handle.client
      .getHandle(progress.rolloutId)
      .query(rolloutStatusQuery)
      .catch(() => undefined);
    if (!status || status.candidate !== progress.version) return [];
    const fresh = status.decisions.slice(this.shown);
    this.shown = status.decisions.length;
    return fresh;
  }
}

async function showReplicas(view: LinesView | BarsView, client: Client, runId: string): Promise<void> {
  // Absent for single-trainer runs, and until the job workflow has started.
  const job = await client.workflow
    .getHandle(trainJobWorkflowId(runId))
    .query(jobStateQuery)
    .catch(() => undefined);
  if (job && job.replicas.length > 0) view.replicas(job);
}

const fmt = (x: number | null | undefined, digits = 4) => (x === null || x === undefined ? '-' : x.toFixed(digits));

function stageLine(progress: RunProgress): string {
  return STAGES.map((s) => `${s}:${progress.stages[s]}`).join(' ');
}

/** One line per replica: rank, worker, epoch/step, loss, the job's samples/s as that rank sees it. */
function replicaLine(job: JobState, rank: number): string {
  const r = job.replicas.find((x) => x.rank === rank)!;
  const p = r.progress;
  return (
    `rank ${r.rank}/${job.worldSize ?? job.replicasWanted} ${r.identity} ` +
    (p
      ? `epoch ${p.epoch} step ${p.step}/${p.stepsPerEpoch} loss ${fmt(p.loss)} · ` +
        `${Math.round(p.samplesPerSecond)} samples/s`
      : 'joined')
  );
}

class LinesView {
  private lastReplicaLines = 0;
  private lastReplicaSignature = '';
  private lastStages = '';
  private lastEpoch = 0;
  private lastStepLine = 0;
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(progress: RunProgress): void {
    const stages = stageLine(progress);
    if (stages !== this.lastStages) {
      this.lastStages = stages;
      this.stream.write(`[${progress.runId}] ${stages}\n`);
    }
    const t = progress.train;
    if (!t) return;
    const now = Date.now();
    // A line per epoch, and every 10 s while training (not again once later stages run).
    if (t.epoch !== this.lastEpoch || (progress.stage === 'train' && now - this.lastStepLine > 10_000)) {
      this.lastEpoch = t.epoch;
      this.lastStepLine = now;
      this.stream.write(
        `[${progress.runId}] train epoch ${t.epoch}/${t.epochs} step ${t.step}/${t.stepsPerEpoch} loss ` +
          `${fmt(t.loss)} acc ${fmt(t.accuracy)} ` +
          `val_acc ${fmt(t.valAccuracy)} ${Math.round(t.samplesPerSecond)} samples/s on ${t.backend}` +
          `${t.attempt > 1 ? ` (attempt ${t.attempt}, resumed after epoch ${t.resumedFromEpoch ?? 0})` : ''}\n`,
      );
    }
  }

  decision(runId: string, d: RolloutDecision): void {
    this.stream.write(`[${runId}] rollout ${formatDecision(d)}\n`);
  }

  note(line: string): void {
    this.stream.write(`${line}\n`);
  }

  replicas(job: JobState): void {
    // A line per replica when an attempt or an epoch changes, and every 10 s in between.
    const now = Date.now();
    const signature =
      `${job.attempt}:${job.phase}:` + `${job.replicas.map((r) => `${r.rank}@${r.progress?.epoch ?? 0}`).join(',')}`;
    if (signature === this.lastReplicaSignature && now - this.lastReplicaLines < 10_000) return;
    this.lastReplicaSignature = signature;
    this.lastReplicaLines = now;
    for (const r of [...job.replicas].sort((a, b) => a.rank - b.rank))
      this.stream.write(`[${job.jobId}] ${replicaLine(job, r.rank)} (attempt ${job.attempt})\n`);
  }

  stop(): void {}
}

class BarsView {
  private readonly multibar: cliProgress.MultiBar;
  private readonly stagesBar: cliProgress.SingleBar;
  private epochsBar?: cliProgress.SingleBar;
  private stepsBar?: cliProgress.SingleBar;
  private readonly replicaBars = new Map<number, cliProgress.SingleBar>();

  constructor(stream: NodeJS.WriteStream) {
    this.multibar = new cliProgress.MultiBar(
      {
        stream,
        clearOnComplete: false,
        hideCursor: true,
        format: ' {label} |{bar}| {value}/{total} {detail}',
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
    this.stagesBar = this.multibar.create(STAGES.length, 0, { label: 'stages', detail: '' });
  }

  update(progress: RunProgress): void {
    const finished = STAGES.filter((s) => ['done', 'skipped'].includes(progress.stages[s])).length;
    this.stagesBar.update(finished, {
      label: 'stages',
      detail: progress.stage ? `${progress.stage}…` : progress.status,
    });
    const t = progress.train;
    if (!t) return;
    this.epochsBar ??= this.multibar.create(t.epochs, 0, { label: 'epochs', detail: '' });
    this.stepsBar ??= this.multibar.create(t.stepsPerEpoch, 0, { label: 'steps ', detail: '' });
    const epochsDone = t.step === t.stepsPerEpoch ? t.epoch : t.epoch - 1;
    this.epochsBar.update(epochsDone, {
      label: 'epochs',
      detail:
        `val_acc ${fmt(t.valAccuracy)}` +
        `${t.attempt > 1 ? ` · attempt ${t.attempt}, resumed after epoch ${t.resumedFromEpoch ?? 0}` : ''}`,
    });
    this.stepsBar.setTotal(t.stepsPerEpoch);
    this.stepsBar.update(t.step, {
      label: 'steps ',
      detail:
        `epoch ${t.epoch} loss ${fmt(t.loss)} acc ${fmt(t.accuracy)} · ${Math.round(t.samplesPerSecond)} ` +
        `samples/s on ${t.backend}`,
    });
  }

  decision(_runId: string, d: RolloutDecision): void {
    // Above the bars, which redraw below it.
    this.multibar.log(`rollout ${formatDecision(d)}\n`);
  }

  note(line: string): void {
    this.multibar.log(`${line}\n`);
  }

  replicas(job: JobState): void {
    for (const r of job.replicas) {
      const p = r.progress;
      if (!p) continue;
      let bar = this.replicaBars.get(r.rank);
      if (!bar) {
        bar = this.multibar.create(p.stepsPerEpoch, 0, { label: `rank ${r.rank}`, detail: '' });
        this.replicaBars.set(r.rank, bar);
      }
      bar.update(p.step, { label: `rank ${r.rank}`, detail: replicaLine(job, r.rank) });
    }
  }

  stop(): void {
    this.multibar.stop();
  }
}
