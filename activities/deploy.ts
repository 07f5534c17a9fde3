import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { servingTargets, ServersConfigError, type ServerTarget } from '../control/servers';
import { ServingClient } from '../serving/client';
import type { ApplyReport, DesiredServing, ServerApply } from '../workflows/serving-desired';
import type { ActivityDeps } from './deps';
import type { DeployActivities } from '../workflows/api';

/**
 * The deploy activity: makes every configured model server serve a model's desired state — the
 * versions it keeps loaded (a `specific` version policy), its labels, its traffic split and
 * shadow. Idempotent: it reads each server's state first and changes only what differs, so the
 * registry can run it every few seconds to bring back a server that restarted. A server that is
 * down is reported, not thrown: the others still get the state, and the next reconcile retries.
 */

const LOAD_TIMEOUT_MS = 120_000;

export function configuredServers(deps: ActivityDeps): ServerTarget[] {
  try {
    return servingTargets(deps.home);
  } catch (error) {
    if (error instanceof ServersConfigError) throw ApplicationFailure.nonRetryable(error.message, 'ServersConfigError');
    throw error;
  }
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

async function applyToServer(
  client: ServingClient,
  url: string,
  model: string,
  desired: DesiredServing,
  heartbeat: () => void,
): Promise<ServerApply> {
  const changed: string[] = [];
  const { state } = await client.adminState();
  const current = state.models[model];

  if (desired.versions.length === 0) {
    if (current || !state.removed.includes(model)) {
      await client.removeModel(model).catch(() => undefined);
      changed.push('model removed');
    }
    return { url, ok: true, changed };
  }

  const policy = { specific: { versions: [...desired.versions].sort((a, b) => a - b) } };
  if (
    !current ||
    !sameJson(current.model_version_policy, policy) ||
    !sameJson(sortKeys(current.version_labels), sortKeys(desired.labels))
  ) {
    await client.putModel(model, { model_version_policy: policy, version_labels: desired.labels });
    changed.push(
      `versions ${policy.specific.versions.join(', ')}; labels ${
        Object.entries(desired.labels)
          .map(([l, v]) => `${l}=v${v}`)
          .join(', ') || 'none'
      }`,
    );
  }

  // A split may only name AVAILABLE versions: wait for the loads (a new version warms up first).
  const deadline = Date.now() + LOAD_TIMEOUT_MS;
  for (;;) {
    const statuses = await client.modelStatus(model).catch(() => []);
    const missing = desired.versions.filter((v) => statuses.find((s) => s.version === v)?.state !== 'AVAILABLE');
    if (missing.length === 0) break;
    const failed = statuses.filter((s) => missing.includes(s.version) && s.error);
    if (failed.length)
      return {
        url,
        ok: false,
        changed,
        error: failed.map((s) => `v${s.version} failed to load: ${s.error}`).join('; '),
      };
    if (Date.now() > deadline)
      return {
        url,
        ok: false,
        changed,
        error: `v${missing.join(', v')} not AVAILABLE after ${LOAD_TIMEOUT_MS / 1000} s`,
      };
    heartbeat();
    await sleep(50);
  }

  const traffic = {
    ...(desired.split ? { split: desired.split } : {}),
    ...(desired.shadow ? { shadow: desired.shadow } : {}),
  };
  const currentTraffic = state.traffic[model];
  if (Object.keys(traffic).length === 0) {
    if (currentTraffic) {
      await client.clearTraffic(model);
      changed.push('traffic cleared');
    }
  } else if (!currentTraffic || !sameJson(currentTraffic, traffic)) {
    await client.setTraffic(model, traffic);
    changed.push(
      `split ${desired.split?.map((s) => `v${s.version}:${s.weight}`).join(' ') ?? 'none'}` +
        `${desired.shadow ? `; shadow v${desired.shadow.version} ${desired.shadow.percent} %` : ''}`,
    );
  }
  return { url, ok: true, changed };
}

function sortKeys(record: Record<string, number> | undefined): [string, number][] {
  return Object.entries(record ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function createDeployActivities(deps: ActivityDeps): Pick<DeployActivities, 'applyServing' | 'servingServers'> {
  return {
    async applyServing({ model, desired }): Promise<ApplyReport> {
      const context = Context.current();
      const servers = configuredServers(deps);
      const results = await Promise.all(
        servers.map(async (target): Promise<ServerApply> => {
          const client = new ServingClient(target, { timeoutMs: 10_000 });
          try {
            return await applyToServer(client, target.url, model, desired, () => context.heartbeat());
          } catch (error) {
            return { url: target.url, ok: false, changed: [], error: (error as Error).message };
          }
        }),
      );
      for (const r of results) {
        if (r.changed.length) context.log.info(`${model} on ${r.url}: ${r.changed.join('; ')}`);
        if (!r.ok) context.log.warn(`${model} on ${r.url}: ${r.error}`);
      }
      return { generation: desired.generation, servers: results };
    },
    async servingServers(): Promise<string[]> {
      return configuredServers(deps).map((s) => s.url);
    },
  };
}
