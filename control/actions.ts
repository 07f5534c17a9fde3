import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { readRegistry, registryHandle } from './registry';
import { runningRollout } from './reads';
import { deploymentPrefix } from './task-queues';
import {
  approveRolloutUpdate,
  approveUpdate,
  experimentWorkflowId,
  promoteRolloutUpdate,
  promoteUpdate,
  rollbackRolloutUpdate,
  rollbackUpdate,
  rolloutStatusQuery,
  stopExperimentUpdate,
  type ApprovalState,
  type ExperimentStatus,
  type RegistryState,
  type RolloutStatus,
  type ServingChange,
} from '../workflows/api';

/**
 * The actions on a model's traffic, the same Updates whoever asks — `gantry promote|rollback|approve|experiment
 * stop` and the dashboard's buttons: on the running rollout when there is one, else on the model's registry.
 * A refusal (no such model, a validator's or handler's no) is an ActionRefused, the asker's to fix.
 */

export class ActionRefused extends Error {}

async function refusedAsAction<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError) throw new ActionRefused(error.cause?.message ?? error.message);
    throw error;
  }
}

async function requireRegistry(client: Client, model: string): Promise<RegistryState> {
  const state = await readRegistry(client, model);
  if (!state) throw new ActionRefused(`no model named "${model}" is registered`);
  return state;
}

export type PromoteOutcome = { via: 'rollout'; status: RolloutStatus } | { via: 'registry'; change: ServingChange };

/** Makes `version` the champion: the running rollout's candidate promoted now, else the registry's alias moved. */
export async function promoteVersion(
  client: Client,
  model: string,
  version: number,
  reason?: string,
): Promise<PromoteOutcome> {
  await requireRegistry(client, model);
  const rollout = await runningRollout(client, model);
  if (rollout) {
    const status = await rollout.query(rolloutStatusQuery);
    if (status.candidate !== version) {
      throw new ActionRefused(
        `a rollout of v${status.candidate} is running for "${model}": promote v${status.candidate}, or roll it ` +
          `back first (gantry rollback ${model})`,
      );
    }
    return {
      via: 'rollout',
      status: await refusedAsAction(() => rollout.executeUpdate(promoteRolloutUpdate, { args: [{ reason }] })),
    };
  }
  const change = await refusedAsAction(() =>
    registryHandle(client, model).executeUpdate(promoteUpdate, { args: [{ version, reason }] }),
  );
  return { via: 'registry', change };
}

export interface RollbackOutcome {
  /** The running rollout's end, when there was one. */
  rollout: RolloutStatus | null;
  /** The registry's change, when the champion moved too (`to`, or no rollout was running). */
  change: (ServingChange & { rolledBack: number | null }) | null;
}

/** Rolls the running canary back and, when `to` is given or no rollout runs, the champion too. */
export async function rollbackModel(
  client: Client,
  model: string,
  options: { to?: number; reason?: string } = {},
): Promise<RollbackOutcome> {
  await requireRegistry(client, model);
  const rollout = await runningRollout(client, model);
  let ended: RolloutStatus | null = null;
  if (rollout) {
    // The canary goes first; then, if asked, the champion too.
    ended = await refusedAsAction(() =>
      rollout.executeUpdate(rollbackRolloutUpdate, { args: [{ reason: options.reason }] }),
    );
    if (options.to === undefined) return { rollout: ended, change: null };
  }
  const change = await refusedAsAction(() =>
    registryHandle(client, model).executeUpdate(rollbackUpdate, {
      args: [{ to: options.to, reason: options.reason ?? 'manual rollback' }],
    }),
  );
  return { rollout: ended, change };
}

export type ApproveOutcome = { via: 'rollout'; status: RolloutStatus } | { via: 'workflow'; approval: ApprovalState };

/**
 * Approves a model's running rollout, else what a running workflow of that id waits for in workflows/stages.ts
 * approval() (the same `approve` Update).
 */
export async function approve(client: Client, modelOrWorkflowId: string, reason?: string): Promise<ApproveOutcome> {
  const rollout = await runningRollout(client, modelOrWorkflowId);
  if (rollout)
    return {
      via: 'rollout',
      status: await refusedAsAction(() => rollout.executeUpdate(approveRolloutUpdate, { args: [{ reason }] })),
    };
  const handle = client.workflow.getHandle(modelOrWorkflowId);
  let running = false;
  try {
    running = (await handle.describe()).status.name === 'RUNNING';
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) throw error;
  }
  if (!running)
    throw new ActionRefused(
      `no rollout of "${modelOrWorkflowId}" is running and no running workflow has that id, so there is nothing ` +
        'to approve',
    );
  return {
    via: 'workflow',
    approval: await refusedAsAction(() => handle.executeUpdate(approveUpdate, { args: [{ reason }] })),
  };
}

/** Ends the model's running experiment now; it decides on the feedback gathered so far. */
export async function stopExperiment(client: Client, model: string, reason?: string): Promise<ExperimentStatus> {
  try {
    return await client.workflow
      .getHandle(experimentWorkflowId(deploymentPrefix(), model))
      .executeUpdate(stopExperimentUpdate, { args: [{ reason }] });
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new ActionRefused(`no experiment on "${model}" is running`);
    if (error instanceof WorkflowUpdateFailedError) throw new ActionRefused(error.cause?.message ?? error.message);
    throw error;
  }
}
