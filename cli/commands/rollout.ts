import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ActionRefused, approve, promoteVersion, rollbackModel } from '../../control/actions';
import { runningRollout } from '../../control/reads';
import { readRegistry } from '../../control/registry';
import { withClient } from '../../control/connect';
import { deploymentPrefix, taskQueueOf } from '../../control/task-queues';
import { RolloutSpecSchema, type RolloutSpec } from '../../pipelines/spec';
import {
  rolloutStatusQuery,
  rolloutWorkflowId,
  type RegistryEvent,
  type RegistryState,
  type RolloutDecision,
  type RolloutStatus,
  type ServingChange,
} from '../../workflows/api';
import { rolloutWorkflow } from '../../workflows/rollout';
import { CommandFailed, UsageError } from '../errors';
import { resolveSpec } from '../runs';

/**
 * Manual control of a model's production traffic: promote, rollback, approve, and the rollout's
 * status; `rollout start` runs a canary for a published version without a retrain. Each is one
 * Update — on the running rollout when there is one, else on the model's registry — that returns
 * once every model server serves the new state.
 */

function parseVersion(text: string, what: string): number {
  const version = Number(text.replace(/^v/, ''));
  if (!Number.isInteger(version) || version < 1)
    throw new UsageError(`${what}: "${text}" is not a version number (e.g. 3 or v3)`);
  return version;
}

async function requireRegistry(client: Client, model: string): Promise<RegistryState> {
  const state = await readRegistry(client, model);
  if (!state) throw new UsageError(`no model named "${model}" is registered`);
  return state;
}

/** Runs an action (control/actions.ts); a refusal is the user's to fix: exit 2 with the reason. */
async function refusedAsUsage<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof ActionRefused) throw new UsageError(error.message);
    throw error;
  }
}

function describeChange(change: ServingChange, ms: number): string {
  const servers = change.apply.servers;
  const failed = servers.filter((s) => !s.ok);
  const where =
    servers.length === 0
      ? 'no model servers configured'
      : `${servers.length - failed.length}/${servers.length} server(s) serve it`;
  return (
    `${change.serving.note} — ${where} (${ms.toFixed(0)} ms)` +
    `${failed.map((s) => `\n  ${s.url}: ${s.error}`).join('')}`
  );
}

export async function promoteCommand(
  model: string,
  versionText: string,
  options: { reason?: string; json?: boolean },
): Promise<void> {
  const version = parseVersion(versionText, 'version');
  await withClient(async (client) => {
    const started = performance.now();
    const outcome = await refusedAsUsage(() => promoteVersion(client, model, version, options.reason));
    if (outcome.via === 'rollout')
      print(
        options.json,
        outcome.status,
        `v${version} promoted; the rollout ended (${(performance.now() - started).toFixed(0)} ms)`,
      );
    else print(options.json, outcome.change, describeChange(outcome.change, performance.now() - started));
  });
}

export async function rollbackCommand(
  model: string,
  options: { to?: string; reason?: string; json?: boolean },
): Promise<void> {
  const to = options.to === undefined ? undefined : parseVersion(options.to, '--to');
  await withClient(async (client) => {
    const started = performance.now();
    const { rollout: ended, change } = await refusedAsUsage(() =>
      rollbackModel(client, model, { to, reason: options.reason }),
    );
    if (change) print(options.json, change, describeChange(change, performance.now() - started));
    else
      print(
        options.json,
        ended,
        `v${ended!.candidate} rolled back; v${ended!.champion} keeps the traffic ` +
          `(${(performance.now() - started).toFixed(0)} ms)`,
      );
  });
}

/**
 * `gantry approve <model|workflowId>`: a model's running rollout, else a user's workflow of that id waiting in
 * workflows/stages.ts approval() (the same `approve` Update).
 */
export async function approveCommand(model: string, options: { reason?: string; json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const outcome = await refusedAsUsage(() => approve(client, model, options.reason));
    if (outcome.via === 'workflow') {
      const approved = outcome.approval;
      print(options.json, approved, `approved: ${approved.subject}${approved.reason ? ` (${approved.reason})` : ''}`);
      return;
    }
    const status = outcome.status;
    print(
      options.json,
      status,
      status.outcome
        ? `v${status.candidate} ${status.outcome.result}`
        : `approved: v${status.candidate} is promoted once its steps pass`,
    );
  });
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  console.log(json ? JSON.stringify(value) : text);
}

export function formatDecision(d: RolloutDecision): string {
  const where = d.phase === 'canary' ? `step ${d.step} (${d.percent} %)` : d.phase;
  const time = d.at.slice(11, 19);
  return `${time} ${where.padEnd(14)} ${d.action.padEnd(8)} ${d.message}`;
}

function formatEvent(e: RegistryEvent): string {
  return `${e.at.slice(0, 19).replace('T', ' ')} ${e.kind.padEnd(11)} ${e.message}`;
}

export async function rolloutStatusCommand(model: string, options: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const state = await requireRegistry(client, model);
    const rollout = await runningRollout(client, model);
    const status = rollout ? await rollout.query(rolloutStatusQuery) : null;
    if (options.json) {
      console.log(
        JSON.stringify({
          rollout: status,
          serving: state.serving ?? null,
          lastApply: state.lastApply ?? null,
          champion: state.aliases[state.championAlias ?? 'champion'] ?? null,
          events: state.events ?? [],
        }),
      );
      return;
    }
    const champion = state.aliases[state.championAlias ?? 'champion'];
    console.log(
      `model ${model}: champion ${champion !== undefined ? `v${champion}` : 'none'}; serving: ` +
        `${state.serving?.note ?? 'nothing desired yet'}`,
    );
    if (state.lastApply) {
      for (const s of state.lastApply.servers)
        console.log(`  ${s.url}: ${s.ok ? 'in sync' : `NOT in sync: ${s.error}`}`);
    }
    if (status) {
      console.log(
        `rollout of v${status.candidate} against v${status.champion}: ` +
          `${status.phase}${status.step ? `, step ${status.step}/${status.steps} at ${status.percent} %` : ''}`,
      );
      for (const d of status.decisions) console.log(`  ${formatDecision(d)}`);
      if (status.latest?.action === 'analyse') console.log(`  latest analysis: ${status.latest.message}`);
    } else {
      console.log('no rollout is running; recent decisions:');
      for (const e of (state.events ?? []).slice(-15)) console.log(`  ${formatEvent(e)}`);
    }
  });
}

export async function rolloutStartCommand(
  model: string,
  versionText: string,
  options: { pipeline?: string; set: string[]; follow?: boolean; json?: boolean },
): Promise<void> {
  const candidate = parseVersion(versionText, 'version');
  let spec: RolloutSpec;
  let championAlias = 'champion';
  if (options.pipeline) {
    const pipeline = await resolveSpec(options.pipeline, options.set);
    spec = pipeline.deployment.rollout ?? RolloutSpecSchema.parse({});
    championAlias = pipeline.deployment.alias;
  } else {
    if (options.set.length)
      throw new UsageError('--set needs --pipeline (the spec whose deployment.rollout it changes)');
    spec = RolloutSpecSchema.parse({});
  }
  await withClient(async (client) => {
    const state = await requireRegistry(client, model);
    const entry = state.versions.find((v) => v.version === candidate);
    if (!entry) throw new UsageError(`"${model}" has no version ${candidate}`);
    if (entry.status !== 'published') throw new UsageError(`v${candidate} of "${model}" is not published`);
    if (state.trafficOwner) {
      const owner = state.trafficOwner;
      throw new UsageError(
        owner.kind === 'rollout'
          ? `a rollout of "${model}" is already running (gantry rollout status ${model})`
          : `the ${owner.kind} ${owner.id} steers "${model}"'s traffic since ${owner.since}; wait for it or stop ` +
              `it first`,
      );
    }
    const champion = state.aliases[championAlias] ?? null;
    let handle: WorkflowHandle<typeof rolloutWorkflow>;
    try {
      handle = await client.workflow.start(rolloutWorkflow, {
        workflowId: rolloutWorkflowId(deploymentPrefix(), model),
        taskQueue: taskQueueOf('control'),
        args: [{ model, candidate, champion, championAlias, spec }],
      });
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError)
        throw new UsageError(`a rollout of "${model}" is already running (gantry rollout status ${model})`);
      throw error;
    }
    if (!options.follow) {
      print(
        options.json,
        { workflowId: handle.workflowId },
        `rollout of v${candidate} started (${handle.workflowId}); gantry rollout status ${model}`,
      );
      return;
    }
    const result = await followRollout(handle, options.json ? undefined : process.stderr);
    print(options.json, result, `v${candidate} ${result.outcome?.result}: ${result.outcome?.reasons.join('; ')}`);
    if (result.outcome?.result !== 'promoted') throw new CommandFailed(`v${candidate} was rolled back`);
  });
}

/** Prints each rollout decision as it is made; resolves with the final status. */
export async function followRollout(
  handle: WorkflowHandle<typeof rolloutWorkflow>,
  stream: NodeJS.WritableStream | undefined,
): Promise<RolloutStatus> {
  const done = handle.result();
  let printed = 0;
  let finished = false;
  done.then(
    () => (finished = true),
    () => (finished = true),
  );
  const show = async () => {
    const status = await handle.query(rolloutStatusQuery).catch(() => undefined);
    if (!status || !stream) return;
    for (; printed < status.decisions.length; printed++)
      stream.write(`  ${formatDecision(status.decisions[printed]!)}\n`);
  };
  while (!finished) {
    await show();
    await Promise.race([done.catch(() => undefined), sleep(300)]);
  }
  await show();
  return done;
}
