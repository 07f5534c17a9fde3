import { WorkflowFailedError } from '@temporalio/client';
import { withClient } from '../../control/connect';
import { CommandFailed } from '../errors';
import { followRun } from '../follow';
import { formatRunResult } from '../format';
import { resolveSpec, startRun } from '../runs';
import type { RunResult } from '../../workflows/api';

export interface RunOptions {
  set: string[];
  follow?: boolean;
  /** With --follow: each replica of a data-parallel train job too. */
  replicas?: boolean;
  json?: boolean;
  detach?: boolean;
  id?: string;
}

/** The innermost message of a failed run: what actually went wrong, not the wrapping layers. */
export function rootCause(error: unknown): string {
  let current = error as { message?: string; cause?: unknown } | undefined;
  let message = current?.message ?? String(error);
  while (current?.cause) {
    current = current.cause as { message?: string; cause?: unknown };
    if (current.message) message = current.message;
  }
  return message;
}

export async function runCommand(pipeline: string, options: RunOptions): Promise<RunResult | undefined> {
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
      console.log(options.json ? JSON.stringify({ ...value, wallSeconds: seconds }) : formatRunResult(value, seconds));
      return value;
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const message = rootCause(error);
      if (options.json) console.log(JSON.stringify({ runId: handle.workflowId, status: 'failed', error: message }));
      throw new CommandFailed(`run ${handle.workflowId} failed: ${message}`);
    }
  });
}
