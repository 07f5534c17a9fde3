import { ScheduleNotFoundError, type Client, type ScheduleOverlapPolicy } from '@temporalio/client';
import { withClient } from '../../control/connect';
import { taskQueueOf } from '../../control/task-queues';
import { OverlapPolicySchema } from '../../pipelines/spec';
import { retrainScheduleId, scheduledRunWorkflowId } from '../../workflows/api';
import { retrainWorkflow } from '../../workflows/retrain';
import { UsageError } from '../errors';
import { resolveSpec, retrainInput } from '../runs';

/** Scheduled retraining on Temporal Schedules: the server, not a cron daemon, keeps the clock. */

export interface ScheduleCreateOptions {
  cron: string;
  overlap?: string;
  set: string[];
  id?: string;
  paused?: boolean;
  json?: boolean;
}

function overlapPolicy(value: string): ScheduleOverlapPolicy {
  const parsed = OverlapPolicySchema.safeParse(value);
  if (!parsed.success)
    throw new UsageError(`--overlap: "${value}" is not one of ${OverlapPolicySchema.options.join(', ')}`);
  return parsed.data.toUpperCase().replace('-', '_') as ScheduleOverlapPolicy;
}

/** withClient, with an unknown schedule id reported as the user's mistake. */
async function withScheduleClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  try {
    return await withClient(fn);
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) throw new UsageError(`no schedule with id "${error.scheduleId}"`);
    throw error;
  }
}

export async function scheduleCreateCommand(pipeline: string, options: ScheduleCreateOptions): Promise<void> {
  const spec = await resolveSpec(pipeline, options.set);
  const overlap = overlapPolicy(options.overlap ?? spec.schedule?.overlap ?? 'skip');
  const scheduleId = options.id ?? retrainScheduleId(spec.name);
  await withScheduleClient(async (client) => {
    try {
      await client.schedule.create({
        scheduleId,
        spec: { cronExpressions: [options.cron] },
        action: {
          type: 'startWorkflow',
          workflowType: retrainWorkflow,
          workflowId: scheduledRunWorkflowId(spec.name),
          taskQueue: taskQueueOf('control'),
          args: [retrainInput(spec)],
        },
        policies: { overlap },
        memo: { pipeline: spec.name, cron: options.cron },
        state: { paused: Boolean(options.paused), note: `gantry: retrain ${spec.name}` },
      });
    } catch (error) {
      const message = (error as Error).message;
      if (/already|exists/i.test(message)) throw new UsageError(`a schedule with id "${scheduleId}" already exists`);
      if (/invalid|cron|parse/i.test(message))
        throw new UsageError(`--cron: "${options.cron}" was refused by Temporal: ${message}`);
      throw error;
    }
    console.log(
      options.json
        ? JSON.stringify({ scheduleId, cron: options.cron, overlap })
        : `created schedule ${scheduleId} (${options.cron}, overlap ${overlap})`,
    );
  });
}

export async function scheduleListCommand(options: { json?: boolean }): Promise<void> {
  await withScheduleClient(async (client) => {
    const rows = [];
    for await (const summary of client.schedule.list()) {
      rows.push({
        scheduleId: summary.scheduleId,
        paused: summary.state.paused,
        workflowType: summary.action?.type === 'startWorkflow' ? summary.action.workflowType : null,
        nextActionTimes: summary.info.nextActionTimes.map((t) => t.toISOString()),
      });
    }
    rows.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
    if (options.json) return console.log(JSON.stringify(rows));
    if (rows.length === 0) console.log('no schedules');
    for (const r of rows)
      console.log(`${r.scheduleId}\t${r.paused ? 'paused' : 'active'}\tnext ${r.nextActionTimes[0] ?? '-'}`);
  });
}

export async function scheduleDescribeCommand(scheduleId: string, options: { json?: boolean }): Promise<void> {
  await withScheduleClient(async (client) => {
    const d = await client.schedule.getHandle(scheduleId).describe();
    const report = {
      scheduleId: d.scheduleId,
      paused: d.state.paused,
      note: d.state.note ?? null,
      cron: (d.memo?.cron as string | undefined) ?? null,
      pipeline: (d.memo?.pipeline as string | undefined) ?? null,
      overlap: d.policies.overlap,
      actions: d.info.numActionsTaken,
      recentRuns: d.info.recentActions.map((a) => ({
        scheduledAt: a.scheduledAt.toISOString(),
        workflowId: a.action.workflow.workflowId,
      })),
      runningRuns: d.info.runningActions.map((a) => a.workflow.workflowId),
      nextActionTimes: d.info.nextActionTimes.map((t) => t.toISOString()),
    };
    if (options.json) return console.log(JSON.stringify(report));
    console.log(
      [
        `schedule ${report.scheduleId}: ${report.paused ? 'paused' : 'active'}` +
          `${report.note ? ` (${report.note})` : ''}, pipeline ${report.pipeline ?? '-'}, ` +
          `cron "${report.cron ?? '-'}", overlap ${report.overlap}`,
        `actions taken: ${report.actions}; running: ${report.runningRuns.join(', ') || 'none'}`,
        `next: ${report.nextActionTimes.slice(0, 3).join(', ') || '-'}`,
        ...report.recentRuns.map((r) => `  ran ${r.workflowId} at ${r.scheduledAt}`),
      ].join('\n'),
    );
  });
}

export async function scheduleSimpleCommand(
  verb: 'pause' | 'unpause' | 'trigger' | 'delete',
  scheduleId: string,
  note?: string,
): Promise<void> {
  await withScheduleClient(async (client) => {
    const handle = client.schedule.getHandle(scheduleId);
    if (verb === 'pause') await handle.pause(note ?? 'paused with gantry');
    if (verb === 'unpause') await handle.unpause(note ?? 'unpaused with gantry');
    if (verb === 'trigger') await handle.trigger();
    if (verb === 'delete') await handle.delete();
    console.log(`${verb === 'trigger' ? 'triggered' : `${verb}d`} schedule ${scheduleId}`);
  });
}
