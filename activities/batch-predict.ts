import { createReadStream } from 'node:fs';
import { appendFile, type FileHandle, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { writeFileAtomically } from '../artifacts/store';
import { DatasetError } from '../data/errors';
import { activeBackend } from '../engine/backend';
import { loadServable, readPreprocessing, type Servable } from '../serving/loader';
import {
  MAX_BAD_ROW_SAMPLES,
  type AssembleInput,
  type AssembleResult,
  type BadRow,
  type BatchPredictInput,
  type PredictPlan,
  type ShardHeartbeat,
  type ShardInput,
  type ShardResult,
} from '../workflows/batch-predict-api';
import { countInputRows, inputKindOf, shardBatches } from './predict-input';
import { csvHeader, formatPredictions, type OutputLayout, outputLayoutOf } from './predict-output';
import { writeParquetPredictions } from './predict-parquet';

/**
 * `gantry predict`'s activities (workflows/batch-predict.ts runs them). Planning and assembling are light and run on
 * the control pool; `predictShard` runs on the job's pool (train, or predict). Every one is safe to run again:
 * a shard's rows go to a temp file renamed into `<workDir>/shard-<n>.part`, then its result to `shard-<n>.done.json`
 * (the mark that the shard is complete: a shard that finds it returns it without computing anything); the output is
 * written to a temp file renamed over `--output`, and only then is the work folder removed.
 */

/** Rows per model call: the batch the bench compares against `model.predict` at the same size. */
export const PREDICT_BATCH_ROWS = 512;

/** Shards a job may have: each is a few events of the workflow's history, which must stay well under its limit. */
export const MAX_SHARDS = 5000;

/** A refusal: the input or the version cannot be predicted, and a retry would not change that. */
function refused(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'PredictRefused');
}

const shardName = (index: number) => `shard-${String(index).padStart(5, '0')}`;

export function shardFiles(workDir: string, index: number) {
  const base = path.join(workDir, shardName(index));
  return { part: `${base}.part`, rejects: `${base}.rejects.jsonl`, done: `${base}.done.json` };
}

/** The work folder of a job: hidden, beside the output (same filesystem, so the final rename is atomic). */
export function workDirOf(output: string, jobId: string): string {
  const safe = jobId.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(-120);
  return path.join(path.dirname(output), `.${path.basename(output)}.${safe}.shards`);
}

/** The version this worker loaded last, kept for the next shard of the same job. */
let loaded: { dir: string; servable: Promise<Servable> } | undefined;

async function servableOf(dir: string): Promise<Servable> {
  if (loaded?.dir !== dir) {
    const previous = loaded;
    loaded = { dir, servable: loadServable(dir, { warmup: false }) };
    previous?.servable.then((s) => s.dispose()).catch(() => undefined);
    loaded.servable.catch(() => {
      if (loaded?.dir === dir) loaded = undefined;
    });
  }
  return loaded.servable;
}

/** GANTRY_PREDICT_TRACE names a file that gets a line per shard computed or reused (tests count computations). */
async function trace(event: Record<string, unknown>): Promise<void> {
  const file = process.env.GANTRY_PREDICT_TRACE;
  const job = Context.current().info.workflowExecution?.workflowId;
  if (file) await appendFile(file, `${JSON.stringify({ job, ...event, pid: process.pid })}\n`);
}

/** A shard's done mark: its result, and the output's CSV header and layout (older marks have no layout). */
type DoneMark = ShardResult & { header: string; layout?: OutputLayout };

async function readDone(file: string): Promise<DoneMark | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as DoneMark;
  } catch {
    return undefined;
  }
}

export function createPlanActivity() {
  return async function planBatchPredict(job: BatchPredictInput): Promise<PredictPlan> {
    const workflowId = Context.current().info.workflowExecution?.workflowId ?? Context.current().info.activityId;
    let kind: PredictPlan['kind'];
    let rows: number;
    try {
      kind = await inputKindOf(job.input);
      const preprocessing = await readPreprocessing(job.versionDir);
      const tabular = !['idx', 'images'].includes(kind);
      if (tabular && preprocessing?.kind !== 'tabular')
        throw refused(
          `${job.input} is a table (${kind}), but v${job.version} of ${job.model} was not trained on one: it has ` +
            `${preprocessing ? `an ${preprocessing.kind}` : 'no'} preprocessing.json`,
        );
      if (!tabular && preprocessing?.kind === 'tabular')
        throw refused(`${job.input} holds images, but v${job.version} of ${job.model} takes records (tabular)`);
      rows = await countInputRows(kind, job.input);
    } catch (error) {
      if (error instanceof DatasetError) throw ApplicationFailure.nonRetryable(error.message, 'DatasetError');
      throw error;
    }
    if (Math.ceil(rows / job.shardRows) > MAX_SHARDS)
      throw refused(
        `${rows} rows in shards of ${job.shardRows} make over ${MAX_SHARDS} shards; ask for more rows a shard ` +
          `(at least ${Math.ceil(rows / MAX_SHARDS)})`,
      );
    const outputDir = await stat(path.dirname(job.output)).catch(() => undefined);
    if (!outputDir?.isDirectory()) throw refused(`${path.dirname(job.output)} (the output's folder) does not exist`);
    const workDir = workDirOf(job.output, workflowId);
    await mkdir(workDir, { recursive: true });
    const shards: PredictPlan['shards'] = [];
    for (let start = 0, index = 0; start < rows; start += job.shardRows, index++)
      shards.push({ index, start, end: Math.min(rows, start + job.shardRows) });
    return { kind, rows, shards, workDir };
  };
}

export function createPredictShardActivity() {
  return async function predictShard({ job, plan, shard }: ShardInput): Promise<ShardResult> {
    const context = Context.current();
    const files = shardFiles(plan.workDir, shard.index);
    const done = await readDone(files.done);
    if (done && (await stat(files.part).catch(() => undefined))) {
      await trace({ shard: shard.index, event: 'reused' });
      const { header: _header, layout: _layout, ...result } = done;
      return { ...result, computed: false };
    }
    await activeBackend();
    const servable = await servableOf(job.versionDir).catch((error: Error) => {
      throw refused(`v${job.version} of ${job.model} (${job.versionDir}) does not load: ${error.message}`);
    });
    const layout = outputLayoutOf(servable);
    await mkdir(plan.workDir, { recursive: true });
    const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const part = await open(files.part + suffix, 'w');
    let rejects: Awaited<ReturnType<typeof open>> | undefined;
    const heartbeat: ShardHeartbeat = { index: shard.index, rowsDone: 0, rows: shard.end - shard.start };
    const badRows: BadRow[] = [];
    let predicted = 0;
    let bad = 0;
    try {
      try {
        for await (const batch of shardBatches(servable, plan.kind, job.input, shard, PREDICT_BATCH_ROWS)) {
          if (batch.bad.length > 0) {
            const first = batch.bad[0]!;
            if (job.onBadRow === 'fail')
              throw ApplicationFailure.nonRetryable(
                `bad row ${first.row} at ${first.where}: ${first.reason} (--on-bad-row skip predicts the others)`,
                'BadRow',
              );
            rejects ??= await open(files.rejects + suffix, 'w');
            await rejects.write(batch.bad.map((b) => `${JSON.stringify(b)}\n`).join(''));
            for (const b of batch.bad)
              if (badRows.length < MAX_BAD_ROW_SAMPLES) badRows.push({ where: b.where, reason: b.reason });
            bad += batch.bad.length;
          }
          if (batch.rows.length > 0) {
            const [output] = servable.run(batch.inputs);
            // A Parquet job's shards write JSON Lines, which the assembly turns into row groups.
            const format = job.format === 'parquet' ? 'jsonl' : job.format;
            await part.write(formatPredictions(format, layout, job.version, batch.rows, output!));
            predicted += batch.rows.length;
          }
          heartbeat.rowsDone = predicted + bad;
          context.heartbeat(heartbeat);
          if (job.batchDelayMs) await sleep(job.batchDelayMs);
        }
      } catch (error) {
        if (error instanceof DatasetError) throw ApplicationFailure.nonRetryable(error.message, 'DatasetError');
        throw error;
      } finally {
        await part.close();
        await rejects?.close();
      }
      await rename(files.part + suffix, files.part);
      if (rejects) await rename(files.rejects + suffix, files.rejects);
    } catch (error) {
      await rm(files.part + suffix, { force: true });
      await rm(files.rejects + suffix, { force: true });
      throw error;
    }
    const result: ShardResult = { index: shard.index, predicted, bad, badRows, computed: true };
    // The CSV header and the layout (Parquet's columns) ride in the mark, so the assembly (on the control pool)
    // need not load the model.
    const mark: DoneMark = { ...result, header: csvHeader(layout), layout };
    await writeFileAtomically(files.done, JSON.stringify(mark));
    await trace({ shard: shard.index, event: 'computed', attempt: context.info.attempt });
    return result;
  };
}

/** What `write` writes, to a temp file renamed over `target`: its size. */
async function writeAtomically(target: string, write: (out: FileHandle) => Promise<void>): Promise<number> {
  const temporary = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const out = await open(temporary, 'w');
    try {
      await write(out);
    } finally {
      await out.close();
    }
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return (await stat(target)).size;
}

/** `header` and then every file of `parts` in order, written to a temp file renamed over `target`. */
function writeConcatenation(target: string, header: string, parts: string[]): Promise<number> {
  return writeAtomically(target, async (out) => {
    if (header) await out.write(header);
    for (const file of parts) for await (const chunk of createReadStream(file)) await out.write(chunk as Buffer);
  });
}

export function createAssembleActivity() {
  return async function assemblePredictions({ job, plan }: AssembleInput): Promise<AssembleResult> {
    const rejectsFile = `${job.output}.rejects.jsonl`;
    const workDir = await stat(plan.workDir).catch(() => undefined);
    if (!workDir) {
      // A retry after the work folder was removed: the output was renamed into place before that.
      const output = await stat(job.output).catch(() => undefined);
      if (!output) throw new Error(`${plan.workDir} is gone and ${job.output} was never written`);
      const rejects = await stat(rejectsFile).catch(() => undefined);
      return { bytes: output.size, rejects: rejects ? rejectsFile : null };
    }
    const shards = plan.shards.map((s) => shardFiles(plan.workDir, s.index));
    const rejectParts: string[] = [];
    let header: string | undefined;
    let layout: OutputLayout | undefined;
    for (const [i, files] of shards.entries()) {
      const done = await readDone(files.done);
      if (!done) throw new Error(`shard ${i} is not complete (${files.done} is missing)`);
      if (done.bad > 0) rejectParts.push(files.rejects);
      header ??= done.header;
      layout ??= done.layout;
    }
    const parts = shards.map((s) => s.part);
    let bytes: number;
    if (job.format === 'parquet') {
      // No shard (an empty input, or marks from before Parquet) gave the layout: the model says what it is.
      const columns = layout ?? outputLayoutOf(await servableOf(job.versionDir));
      bytes = await writeAtomically(job.output, (out) => writeParquetPredictions(out, columns, parts));
    } else {
      // No shard (an empty input) wrote a header: the model says what it is.
      if (job.format !== 'csv') header = '';
      else header ??= csvHeader(outputLayoutOf(await servableOf(job.versionDir)));
      bytes = await writeConcatenation(job.output, header, parts);
    }
    if (rejectParts.length > 0) await writeConcatenation(rejectsFile, '', rejectParts);
    else await rm(rejectsFile, { force: true });
    await rm(plan.workDir, { recursive: true, force: true });
    return { bytes, rejects: rejectParts.length > 0 ? rejectsFile : null };
  };
}
