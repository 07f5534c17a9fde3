import { rootCause } from '../../control/reads';
import { randomBytes } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { withClient } from '../../control/connect';
import { taskQueueOf } from '../../control/task-queues';
import { CommandFailed, UsageError } from '../errors';
import { followRun } from '../follow';
import { formatRunResult, formatStoppedRun } from '../format';
import { resolveSpec, retrainInput, startRun } from '../runs';
import { isStoppedRun, retrainRunId, type RetrainOutcome, type RunResult } from '../../workflows/api';

export interface RunOptions {
  set: string[];
  follow?: boolean;
  /** With --follow: each replica of a data-parallel train job too. */
  replicas?: boolean;
  json?: boolean;
  detach?: boolean;
  id?: string;
  /** A user workflow's argument, as JSON. */
  arg?: string;
  /** A user workflow gets this pipeline's spec (with `--set`) and Gantry's task queues (stages.ts PipelineRun). */
  pipeline?: string;
}

/** What `gantry run` needs of the loaded project (pipelines/load-project.ts). */
export interface RunProject {
  /** The functions the project's workflows module exports: each a workflow type its control workers run. */
  workflows: readonly string[];
}

/** The most `--arg` may hold: it travels in the workflow's history. */
const MAX_ARG_BYTES = 256 * 1024;

/** The innermost message of a failed run: what actually went wrong, not the wrapping layers. */
export { rootCause };

function formatOutcome(value: RetrainOutcome, seconds: number): string {
  return isStoppedRun(value) ? formatStoppedRun(value, seconds) : formatRunResult(value as RunResult, seconds);
}

/**
 * `gantry run <name>`: a workflow the project's workflows module exports (then `--arg` and `--pipeline` say what it
 * is handed), else a built-in or project pipeline.
 */
export async function runNamedCommand(name: string, options: RunOptions, project?: RunProject): Promise<unknown> {
  if (project?.workflows.includes(name)) return runUserWorkflow(name, options);
  if (options.arg !== undefined || options.pipeline !== undefined) {
    const known = project?.workflows.length ? `its workflows: ${project.workflows.join(', ')}` : 'it exports none';
    throw new UsageError(`--arg and --pipeline are for a project's workflows; "${name}" is not one (${known})`);
  }
  return runCommand(name, options);
}

export async function runCommand(pipeline: string, options: RunOptions): Promise<RetrainOutcome | undefined> {
  const spec = await resolveSpec(pipeline, options.set);
  return withClient(async (client) => {
    const started = performance.now();
    const handle = await startRun(client, spec, options.id);
    if (!options.json)
      console.error(
        `started run ${handle.workflowId} (pipeline ${spec.name}, model ${spec.model.name}, ` +
          `${spec.model.architecture})`,
      );
    if (options.detach) {
      console.log(options.json ? JSON.stringify({ runId: handle.workflowId }) : handle.workflowId);
      return undefined;
    }
    const result = handle.result();
    if (options.follow) await followRun(handle, result, process.stderr, options.replicas ? { client } : undefined);
    try {
      const value = await result;
      const seconds = (performance.now() - started) / 1000;
      console.log(options.json ? JSON.stringify({ ...value, wallSeconds: seconds }) : formatOutcome(value, seconds));
      return value;
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const message = rootCause(error);
      if (options.json) console.log(JSON.stringify({ runId: handle.workflowId, status: 'failed', error: message }));
      throw new CommandFailed(`run ${handle.workflowId} failed: ${message}`);
    }
  });
}

/** The user workflow's arguments: the pipeline's PipelineRun, the `--arg` value, or both merged (objects only). */
async function userWorkflowArgs(options: RunOptions): Promise<unknown[]> {
  let arg: unknown;
  if (options.arg !== undefined) {
    if (Buffer.byteLength(options.arg) > MAX_ARG_BYTES)
      throw new UsageError(`--arg: ${Buffer.byteLength(options.arg)} bytes, more than ${MAX_ARG_BYTES}`);
    try {
      arg = JSON.parse(options.arg);
    } catch (error) {
      throw new UsageError(`--arg: not JSON: ${(error as Error).message}`);
    }
  }
  if (options.pipeline === undefined) {
    if (options.set.length) throw new UsageError("--set needs --pipeline: it overrides that pipeline's spec");
    return arg === undefined ? [] : [arg];
  }
  const run = retrainInput(await resolveSpec(options.pipeline, options.set));
  if (arg === undefined) return [run];
  if (typeof arg !== 'object' || arg === null || Array.isArray(arg))
    throw new UsageError('--arg: with --pipeline it must be a JSON object (its fields join the PipelineRun)');
  return [{ ...run, ...arg }];
}

/** Starts a workflow of the project on the control pool, like a pipeline run, and waits for its result. */
async function runUserWorkflow(name: string, options: RunOptions): Promise<unknown> {
  const args = await userWorkflowArgs(options);
  return withClient(async (client) => {
    const started = performance.now();
    const workflowId = options.id ?? retrainRunId(name, new Date(), randomBytes(2).toString('hex'));
    const handle = await client.workflow.start(name, { workflowId, taskQueue: taskQueueOf('control'), args });
    if (!options.json)
      console.error(`started workflow ${workflowId} (${name}); \`gantry approve ${workflowId}\` answers its approvals`);
    if (options.detach) {
      console.log(options.json ? JSON.stringify({ runId: workflowId }) : workflowId);
      return undefined;
    }
    try {
      const value: unknown = await handle.result();
      const seconds = (performance.now() - started) / 1000;
      const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
      if (options.json)
        console.log(
          JSON.stringify(isObject ? { ...value, wallSeconds: seconds } : { result: value, wallSeconds: seconds }),
        );
      else
        console.log(`workflow   ${workflowId} completed in ${seconds.toFixed(1)} s\n${JSON.stringify(value, null, 2)}`);
      return value;
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const message = rootCause(error);
      if (options.json) console.log(JSON.stringify({ runId: workflowId, status: 'failed', error: message }));
      throw new CommandFailed(`workflow ${workflowId} failed: ${message}`);
    }
  });
}
