import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import { withClient } from '../../control/connect';
import { readStudy } from '../../control/reads';
import { taskQueueOf } from '../../control/task-queues';
import { PipelineSpecError, validatePipeline, type PipelineSpec } from '../../pipelines';
import { isStoppedRun, type RunResult } from '../../workflows/api';
import type { tuneWorkflow } from '../../workflows/tune';
import {
  studyStatusQuery,
  TUNE_WORKFLOW_TYPE,
  tuneStudyId,
  type StudyResult,
  type StudyStatus,
} from '../../workflows/tune-api';
import { cornerParams, withParams } from '../../workflows/tuning/space';
import { badFlags, CommandFailed, UsageError } from '../errors';
import { formatRunResult, formatStoppedRun } from '../format';
import { resolveSpec, retrainInput } from '../runs';
import { formatStudy, trialEvents } from '../tune-format';
import { rootCause } from './run';

/** `gantry tune <pipeline>` and `gantry tune status <id>`: hyperparameter studies (workflows/tune.ts). */

export interface TuneOptions {
  set: string[];
  trials?: string;
  parallel?: string;
  follow?: boolean;
  json?: boolean;
  detach?: boolean;
  id?: string;
}

const FlagsSchema = z.object({
  trials: z.coerce.number().int().min(1).max(1000).optional(),
  parallel: z.coerce.number().int().min(1).max(64).optional(),
});

const POLL_MS = 1_000;

/**
 * The study's spec: the pipeline with `--set`, `--trials` and `--parallel`, checked in full, and every extreme value
 * of the space set once and checked too, so a path or range the spec cannot take fails here, not in trial 7.
 */
export async function resolveTuningSpec(pipeline: string, options: Pick<TuneOptions, 'set' | 'trials' | 'parallel'>) {
  const flags = FlagsSchema.safeParse({ trials: options.trials, parallel: options.parallel });
  if (!flags.success) throw badFlags(flags.error);
  const plain = await resolveSpec(pipeline, options.set);
  if (!plain.tuning)
    throw new UsageError(
      `pipeline ${plain.name} has no tuning section: add one (a search space at least), or ` +
        `--set 'tuning.space={"train.learningRate":{"logUniform":[0.0001,0.01]}}'`,
    );
  const sets = [...options.set];
  if (flags.data.trials !== undefined) sets.push(`tuning.budget.trials=${flags.data.trials}`);
  if (flags.data.parallel !== undefined) sets.push(`tuning.parallelism=${flags.data.parallel}`);
  const spec = await resolveSpec(pipeline, sets);
  const { tuning, ...base } = spec;
  const issues: string[] = [];
  for (const corner of cornerParams(tuning!.space)) {
    const [[path, value]] = Object.entries(corner) as [[string, unknown]];
    try {
      validatePipeline(withParams(base, corner));
    } catch (error) {
      const message = error instanceof PipelineSpecError ? error.message : (error as Error).message;
      issues.push(`tuning.space.${path}: the spec cannot take ${JSON.stringify(value)}: ${message}`);
    }
  }
  if (issues.length) throw new UsageError(issues.join('\n'));
  return spec as PipelineSpec & { tuning: NonNullable<PipelineSpec['tuning']> };
}

function studyHandle(client: Client, studyId: string): WorkflowHandle<typeof tuneWorkflow> {
  return client.workflow.getHandle<typeof tuneWorkflow>(studyId);
}

/** Prints each trial's changes (and every 10 s the running trials' epochs) until `done` settles. */
async function followStudy(
  handle: WorkflowHandle,
  done: Promise<unknown>,
  stream: NodeJS.WritableStream = process.stderr,
): Promise<void> {
  let finished = false;
  done.then(
    () => (finished = true),
    () => (finished = true),
  );
  let previous: StudyStatus | null = null;
  let lastProgress = Date.now();
  const show = (status: StudyStatus) => {
    for (const line of trialEvents(previous, status)) stream.write(`${line}\n`);
    previous = status;
    if (Date.now() - lastProgress < 10_000) return;
    lastProgress = Date.now();
    for (const t of status.trials)
      if (t.state === 'running' && t.progress)
        stream.write(
          `[${status.studyId}] trial ${t.trial} epoch ${t.progress.epoch}/${t.targetEpochs} step ` +
            `${t.progress.step}/${t.progress.stepsPerEpoch} loss ${t.progress.loss.toFixed(4)}\n`,
        );
  };
  while (!finished) {
    try {
      show(await handle.query(studyStatusQuery));
    } catch {
      // Not answerable yet (no worker took the first task) or closed: try again.
    }
    await Promise.race([done.catch(() => undefined), sleep(POLL_MS)]);
  }
  try {
    show(await handle.query(studyStatusQuery));
  } catch {
    // Closed and no worker to answer: the result says the rest.
  }
}

function formatResult(result: StudyResult, seconds: number): string {
  const run = isStoppedRun(result.run)
    ? formatStoppedRun(result.run, undefined)
    : formatRunResult(result.run as RunResult, undefined);
  return `${formatStudy(result)}\n\n${run}\nstudy took ${seconds.toFixed(1)} s`;
}

export async function tuneCommand(pipeline: string, options: TuneOptions): Promise<StudyResult | undefined> {
  const spec = await resolveTuningSpec(pipeline, options);
  return withClient(async (client) => {
    const started = performance.now();
    const studyId = options.id ?? tuneStudyId(spec.name, new Date(), randomBytes(2).toString('hex'));
    const handle = await client.workflow.start<typeof tuneWorkflow>(TUNE_WORKFLOW_TYPE, {
      workflowId: studyId,
      taskQueue: taskQueueOf('control'),
      args: [retrainInput(spec)],
    });
    if (!options.json)
      console.error(
        `started study ${studyId} (pipeline ${spec.name}: ${spec.tuning.algorithm}, ${spec.tuning.budget.trials} ` +
          `trials, ${spec.tuning.parallelism} at once); \`gantry tune status ${studyId}\` shows its trials`,
      );
    if (options.detach) {
      console.log(options.json ? JSON.stringify({ studyId }) : studyId);
      return undefined;
    }
    const result = handle.result();
    if (options.follow) await followStudy(handle, result);
    try {
      const value = await result;
      const seconds = (performance.now() - started) / 1000;
      console.log(options.json ? JSON.stringify({ ...value, wallSeconds: seconds }) : formatResult(value, seconds));
      return value;
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const message = rootCause(error);
      if (options.json) console.log(JSON.stringify({ studyId, status: 'failed', error: message }));
      throw new CommandFailed(`study ${studyId} failed: ${message}`);
    }
  });
}

export async function tuneStatusCommand(studyId: string, options: { follow?: boolean; json?: boolean }) {
  await withClient(async (client) => {
    const handle = studyHandle(client, studyId);
    if (!(await readStudy(client, studyId))) throw new UsageError(`no study "${studyId}"`);
    if (options.follow)
      await followStudy(
        handle,
        handle.result().catch(() => undefined),
        options.json ? process.stderr : process.stdout,
      );
    // The same read as the dashboard's study page (control/reads.ts).
    const status = (await readStudy(client, studyId))?.study;
    if (!status) throw new CommandFailed(`no worker answers study ${studyId}'s status query: is \`gantry worker\` up?`);
    console.log(options.json ? JSON.stringify(status) : formatStudy(status));
  });
}
