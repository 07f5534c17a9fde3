import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { z } from 'zod';
import { ActionRefused, stopExperiment } from '../../control/actions';
import { readRegistry } from '../../control/registry';
import { withClient } from '../../control/connect';
import { deploymentPrefix, taskQueueOf } from '../../control/task-queues';
import { DurationSchema } from '../../pipelines/spec';
import { experimentStatusQuery, experimentWorkflowId, type ExperimentStatus } from '../../workflows/api';
import { experimentWorkflow } from '../../workflows/experiment';
import { badFlags, CommandFailed, UsageError } from '../errors';

/**
 * `gantry experiment start|status|stop`: A/B tests between published versions of one model,
 * decided on online accuracy from feedback (workflows/experiment.ts).
 */

const ARM = /^v?(\d+):(\d+(?:\.\d+)?)$/;

export function parseArms(text: string): { version: number; weight: number }[] {
  const arms = text.split(',').map((part, i) => {
    const match = ARM.exec(part.trim());
    if (!match) throw new UsageError(`--arms[${i}]: "${part}" is not VERSION:WEIGHT (e.g. v7:50)`);
    const weight = Number(match[2]);
    if (!(weight > 0)) throw new UsageError(`--arms[${i}]: the weight of v${match[1]} must be positive`);
    return { version: Number(match[1]), weight };
  });
  if (arms.length < 2) throw new UsageError('--arms: an experiment needs at least two arms, e.g. v7:50,v8:50');
  const versions = arms.map((a) => a.version);
  const twice = versions.find((v, i) => versions.indexOf(v) !== i);
  if (twice !== undefined) throw new UsageError(`--arms: v${twice} is listed twice`);
  return arms;
}

const StartFlagsSchema = z.object({
  arms: z.string().min(1),
  duration: DurationSchema,
  alpha: z.coerce.number().gt(0).lt(1),
  minFeedback: z.coerce.number().int().min(1),
  interval: DurationSchema,
});

function handleFor(client: Client, model: string): WorkflowHandle<typeof experimentWorkflow> {
  return client.workflow.getHandle<typeof experimentWorkflow>(experimentWorkflowId(deploymentPrefix(), model));
}

export function formatExperiment(status: ExperimentStatus): string {
  const lines = [
    `experiment on ${status.model}: ${status.phase}${status.stoppedEarly ? ' (stopped early)' : ''}, ` +
      `${status.startedAt ?? '-'} → ${status.endsAt ?? '-'}`,
  ];
  for (const arm of status.arms) {
    const w = status.windows[String(arm.version)];
    const acc = w?.feedback.accuracy;
    lines.push(
      `  v${arm.version} weight ${arm.weight}: ${w?.requests ?? 0} requests, ${w?.feedback.labelled ?? 0} ` +
        `labelled, online accuracy ${acc === null || acc === undefined ? '-' : `${(acc * 100).toFixed(2)} %`}`,
    );
  }
  if (status.verdict) lines.push(`verdict: ${status.verdict.summary}`);
  return lines.join('\n');
}

export async function experimentStartCommand(
  model: string,
  flags: {
    arms: string;
    duration: string;
    alpha: string;
    minFeedback: string;
    interval: string;
    follow?: boolean;
    json?: boolean;
  },
): Promise<void> {
  const parsed = StartFlagsSchema.safeParse(flags);
  if (!parsed.success) throw badFlags(parsed.error);
  const arms = parseArms(parsed.data.arms);
  await withClient(async (client) => {
    const state = await readRegistry(client, model);
    if (!state) throw new UsageError(`no model named "${model}" is registered`);
    for (const arm of arms) {
      const entry = state.versions.find((v) => v.version === arm.version);
      if (!entry) throw new UsageError(`--arms: "${model}" has no version ${arm.version}`);
      if (entry.status !== 'published') throw new UsageError(`--arms: v${arm.version} of "${model}" is not published`);
    }
    if (state.trafficOwner) {
      throw new UsageError(
        `the ${state.trafficOwner.kind} ${state.trafficOwner.id} (version ${state.trafficOwner.version ?? '-'}) ` +
          `steers "${model}"'s traffic since ${state.trafficOwner.since}; wait for it or stop it first`,
      );
    }
    const championAlias = state.championAlias ?? 'champion';
    let handle: WorkflowHandle<typeof experimentWorkflow>;
    try {
      handle = await client.workflow.start(experimentWorkflow, {
        workflowId: experimentWorkflowId(deploymentPrefix(), model),
        taskQueue: taskQueueOf('control'),
        args: [
          {
            model,
            arms,
            duration: parsed.data.duration,
            championAlias,
            champion: state.aliases[championAlias] ?? null,
            alpha: parsed.data.alpha,
            minFeedback: parsed.data.minFeedback,
            analysisInterval: parsed.data.interval,
          },
        ],
      });
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError)
        throw new UsageError(`an experiment on "${model}" is already running (gantry experiment status ${model})`);
      throw error;
    }
    if (!flags.follow) {
      console.log(
        flags.json
          ? JSON.stringify({ workflowId: handle.workflowId })
          : `experiment started (${handle.workflowId}); gantry experiment status ${model}`,
      );
      return;
    }
    let status: ExperimentStatus;
    try {
      status = await handle.result();
    } catch (error) {
      throw new CommandFailed(
        `the experiment failed: ` +
          `${(error as Error).cause ? ((error as Error).cause as Error).message : (error as Error).message}`,
      );
    }
    console.log(flags.json ? JSON.stringify(status) : formatExperiment(status));
  });
}

export async function experimentStatusCommand(model: string, options: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    let status: ExperimentStatus;
    try {
      status = await handleFor(client, model).query(experimentStatusQuery);
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) throw new UsageError(`no experiment on "${model}" has run`);
      throw error;
    }
    console.log(options.json ? JSON.stringify(status) : formatExperiment(status));
  });
}

export async function experimentStopCommand(
  model: string,
  options: { reason?: string; json?: boolean },
): Promise<void> {
  await withClient(async (client) => {
    let status: ExperimentStatus;
    try {
      status = await stopExperiment(client, model, options.reason);
    } catch (error) {
      if (error instanceof ActionRefused) throw new UsageError(error.message);
      throw error;
    }
    console.log(options.json ? JSON.stringify(status) : formatExperiment(status));
  });
}
