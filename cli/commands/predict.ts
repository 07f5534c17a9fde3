import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultPayloadConverter } from '@temporalio/common';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import { withClient } from '../../control/connect';
import { readRegistry } from '../../control/registry';
import { checkPoolName, deploymentPrefix, taskQueueOf } from '../../control/task-queues';
import type { ModelVersion, RegistryState } from '../../workflows/api';
import { batchPredictWorkflow } from '../../workflows/batch-predict';
import {
  BAD_ROW_POLICIES,
  batchPredictProgressQuery,
  batchPredictWorkflowId,
  PREDICT_FORMATS,
  type BatchPredictInput,
  type BatchPredictResult,
  type ShardHeartbeat,
} from '../../workflows/batch-predict-api';
import { badFlags, CommandFailed, UsageError } from '../errors';
import { rootCause } from './run';

export const DEFAULT_SHARD_ROWS = 10_000;

const PredictOptionsSchema = z.object({
  input: z.string().min(1),
  output: z.string().min(1),
  format: z.enum(PREDICT_FORMATS).optional(),
  onBadRow: z.enum(BAD_ROW_POLICIES).default('skip'),
  shardRows: z.coerce.number().int().min(1).max(10_000_000).default(DEFAULT_SHARD_ROWS),
  pool: z.string().default('train'),
  follow: z.boolean().optional(),
  json: z.boolean().optional(),
});
export type PredictOptions = z.input<typeof PredictOptionsSchema>;

/** `<model>`, `<model>:<version>` or `<model>@<alias>`. */
export function parseModelRef(ref: string): { model: string; version?: number; alias?: string } {
  const match = /^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::(\d+)|@([A-Za-z0-9][A-Za-z0-9_.-]*))?$/.exec(ref);
  if (!match)
    throw new UsageError(`${JSON.stringify(ref)} is not a model: write <model>, <model>:<version> or <model>@<alias>`);
  const [, model, version, alias] = match;
  return { model: model!, ...(version ? { version: Number(version) } : {}), ...(alias ? { alias } : {}) };
}

/**
 * The version a reference names: the one given, the alias's, or (neither) the champion's alias, else the newest
 * published version. It must be published: batch prediction reads the version's folder in the model repository.
 */
export function resolveVersion(state: RegistryState, ref: ReturnType<typeof parseModelRef>): ModelVersion {
  const { model } = ref;
  let number = ref.version;
  if (ref.alias !== undefined) {
    number = state.aliases[ref.alias];
    if (number === undefined)
      throw new UsageError(
        `${model} has no alias "${ref.alias}"; its aliases: ${Object.keys(state.aliases).join(', ') || 'none'}`,
      );
  } else if (number === undefined) {
    const champion = state.championAlias ? state.aliases[state.championAlias] : undefined;
    number = champion ?? state.versions.filter((v) => v.publishedPath).at(-1)?.version;
    if (number === undefined) throw new UsageError(`${model} has no published version to predict with`);
  }
  const version = state.versions.find((v) => v.version === number);
  if (!version) throw new UsageError(`${model} has no version ${number}`);
  if (!version.publishedPath)
    throw new UsageError(
      `v${number} of ${model} is not published (${version.blessed ? 'registered' : 'not blessed'}); batch ` +
        'prediction reads published versions',
    );
  return version;
}

function formatOf(output: string): BatchPredictInput['format'] {
  const name = output.toLowerCase();
  return name.endsWith('.csv') ? 'csv' : name.endsWith('.parquet') ? 'parquet' : 'jsonl';
}

/** Whether a worker polls `taskQueue` for activities (one has in the last minutes, as Temporal counts it). */
async function hasPollers(client: Client, taskQueue: string): Promise<boolean> {
  const response = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    // TASK_QUEUE_TYPE_ACTIVITY (the enum lives in @temporalio/proto, which Gantry does not depend on directly).
    taskQueueType: 2,
  });
  return (response.pollers ?? []).length > 0;
}

/** Progress lines until the job ends: shards done, and each running shard's rows from its heartbeat. */
async function follow(handle: WorkflowHandle, done: Promise<unknown>): Promise<void> {
  let finished = false;
  done.then(
    () => (finished = true),
    () => (finished = true),
  );
  let last = '';
  while (!finished) {
    try {
      const progress = await handle.query(batchPredictProgressQuery);
      const description = await handle.describe();
      const running = (description.raw.pendingActivities ?? [])
        .map((a) => a.heartbeatDetails?.payloads?.[0])
        .filter((p) => p !== undefined && p !== null)
        .map((p) => defaultPayloadConverter.fromPayload<ShardHeartbeat>(p as never))
        .filter((h) => h && typeof h.index === 'number')
        .sort((a, b) => a.index - b.index)
        .map((h) => `shard ${h.index} ${h.rowsDone}/${h.rows}`);
      const line =
        `${progress.phase}: ${progress.shardsDone}/${progress.shards} shards, ${progress.rowsDone}/${progress.rows} ` +
        `rows${progress.bad ? `, ${progress.bad} bad` : ''}${running.length ? ` (${running.join(', ')})` : ''}`;
      if (line !== last) console.error(line);
      last = line;
    } catch {
      // the workflow is starting, or just finished
    }
    await sleep(500);
  }
  // A job shorter than the polling interval would otherwise show only its start: the final count, once.
  const final = await handle.query(batchPredictProgressQuery).catch(() => null);
  if (final) {
    const line = `${final.phase}: ${final.shardsDone}/${final.shards} shards, ${final.rowsDone}/${final.rows} rows`;
    if (!last.startsWith(line)) console.error(`${line}${final.bad ? `, ${final.bad} bad` : ''}`);
  }
}

export function formatPredictResult(result: BatchPredictResult): string {
  const lines = [
    `predicted ${result.predicted} of ${result.rows} rows of ${result.input} with v${result.version} of ` +
      `${result.model} into ${result.output} (${result.format}, ${result.bytes} bytes, ${result.shards} shards)`,
  ];
  if (result.bad > 0) {
    lines.push(`  ${result.bad} bad rows skipped (every one in ${result.rejects}):`);
    for (const row of result.badRows) lines.push(`    ${row.where}: ${row.reason}`);
    if (result.bad > result.badRows.length) lines.push(`    … and ${result.bad - result.badRows.length} more`);
  }
  return lines.join('\n');
}

/** `gantry predict <model>[:version|@alias] --input … --output …`: a batch prediction job, waited for. */
export async function predictCommand(ref: string, raw: PredictOptions): Promise<void> {
  const parsed = PredictOptionsSchema.safeParse(raw);
  if (!parsed.success) throw badFlags(parsed.error);
  const options = parsed.data;
  const modelRef = parseModelRef(ref);
  try {
    checkPoolName(options.pool);
  } catch (error) {
    throw new UsageError(`--pool: ${(error as Error).message}`);
  }
  if (options.pool === 'control') throw new UsageError('--pool: shards run on the train pool or a predict pool');
  const input = path.resolve(options.input);
  const output = path.resolve(options.output);
  if (!(await stat(input).catch(() => undefined))) throw new UsageError(`--input: ${input} does not exist`);
  if (output === input) throw new UsageError('--output: the input itself; predictions go to a file of their own');
  if (!(await stat(path.dirname(output)).catch(() => undefined))?.isDirectory())
    throw new UsageError(`--output: ${path.dirname(output)} is not a folder`);
  const format = options.format ?? formatOf(output);
  await withClient(async (client) => {
    const state = await readRegistry(client, modelRef.model);
    if (!state) throw new UsageError(`no model named "${modelRef.model}" is registered`);
    const version = resolveVersion(state, modelRef);
    const shardTaskQueue = taskQueueOf(options.pool);
    if (options.pool !== 'train' && !(await hasPollers(client, shardTaskQueue)))
      throw new UsageError(
        `no worker polls the ${options.pool} pool (${shardTaskQueue}): start one (gantry worker --pool ` +
          `${options.pool}) or leave --pool out to use the train pool`,
      );
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
    const workflowId = batchPredictWorkflowId(
      deploymentPrefix(),
      modelRef.model,
      `${stamp}-${randomBytes(3).toString('hex')}`,
    );
    const job: BatchPredictInput = {
      model: modelRef.model,
      version: version.version,
      versionDir: version.publishedPath!,
      input,
      output,
      format,
      onBadRow: options.onBadRow,
      shardRows: options.shardRows,
      pool: options.pool,
      shardTaskQueue,
    };
    const handle = await client.workflow.start(batchPredictWorkflow, {
      workflowId,
      taskQueue: taskQueueOf('control'),
      args: [job],
    });
    if (!options.json)
      console.error(`predicting ${input} with v${version.version} of ${modelRef.model} (${handle.workflowId})`);
    const done = handle.result();
    if (options.follow) await follow(handle, done);
    let result: BatchPredictResult;
    try {
      result = await done;
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const message = rootCause(error);
      if (options.json) console.log(JSON.stringify({ jobId: workflowId, status: 'failed', error: message }));
      throw new CommandFailed(`batch prediction ${workflowId} failed: ${message}`);
    }
    console.log(options.json ? JSON.stringify(result) : formatPredictResult(result));
  });
}
