import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  claimTrafficUpdate,
  concludeUpdate,
  promoteUpdate,
  publishVersionUpdate,
  recordEventUpdate,
  registerVersionUpdate,
  registryStateQuery,
  releaseTrafficUpdate,
  rollbackUpdate,
  setServingUpdate,
  type DeployActivities,
  type ModelVersion,
  type RegistryEvent,
  type RegistryInput,
  type RegistryState,
  type RegistryWorkflow,
  type ServingChange,
} from './api';
import { championOnly, noVersions, type ApplyReport, type ServingLayout } from './serving-desired';

/**
 * The model registry: one long-lived entity workflow per model name (id `<prefix>-registry:<model>`,
 * see registryWorkflowId in workflows/api.ts), holding every version with its lineage and the
 * aliases that point at them. Its state lives in its history alone; it continues as new before the
 * history grows large.
 */

const MAX_EVENTS = 200;

export async function registryWorkflow(input: RegistryInput): Promise<void> {
  const state: RegistryState = input.state ?? { model: input.model, versions: [], aliases: {}, versionByRunId: {} };
  state.championAlias ??= 'champion';
  state.championHistory ??= [];
  state.serving ??= null;
  state.lastApply ??= null;
  state.trafficOwner ??= null;
  state.events ??= [];
  const maxHistoryEvents = input.maxHistoryEvents ?? 10_000;
  const reconcileInterval = input.reconcileInterval ?? '10s';
  const now = () => new Date(Date.now()).toISOString(); // workflow time: deterministic on replay
  // Deploy activities run where the registry runs: the control pool.
  const deploy = proxyActivities<DeployActivities>({
    startToCloseTimeout: '3m',
    // Short, or heartbeating while a server loads: a worker that dies mid-call is noticed in seconds.
    heartbeatTimeout: '10s',
    retry: { initialInterval: '200ms', maximumInterval: '5s', maximumAttempts: 3 },
  });

  const findVersion = (version: number): ModelVersion => {
    const found = state.versions.find((v) => v.version === version);
    if (!found) {
      throw ApplicationFailure.nonRetryable(
        `model "${state.model}" has no version ${version} (versions: ${state.versions.map((v) => v.version).join(', ') || 'none'})`,
        'UnknownVersion',
      );
    }
    return found;
  };
  const requirePublished = (version: number): ModelVersion => {
    const entry = findVersion(version);
    if (entry.status !== 'published')
      throw new Error(`version ${version} of "${state.model}" is not published (it is ${entry.status})`);
    return entry;
  };
  const champion = (): number | null => state.aliases[state.championAlias!] ?? null;
  const moveAlias = (alias: string, version: number) => {
    const previous = state.aliases[alias] ?? null;
    state.aliases[alias] = version;
    if (alias === state.championAlias && previous !== null && previous !== version)
      state.championHistory!.push(previous);
    return previous;
  };
  const record = (event: Omit<RegistryEvent, 'at'>) => {
    state.events!.push({ at: now(), ...event });
    if (state.events!.length > MAX_EVENTS) state.events!.splice(0, state.events!.length - MAX_EVENTS);
  };
  /** Only the workflow that claimed the model's traffic may steer it while it holds it. */
  const requireOwner = (owner: string | undefined, what: string) => {
    const holder = state.trafficOwner;
    if (holder && holder.id !== owner) {
      throw new Error(
        `${what}: the ${holder.kind} ${holder.id} (version ${holder.version ?? '-'}) steers "${state.model}"'s traffic since ${holder.since}; send it to that ${holder.kind} or stop it first`,
      );
    }
    if (owner !== undefined && (!holder || holder.id !== owner))
      throw new Error(`${what}: ${owner} does not hold "${state.model}"'s traffic`);
  };

  // ---- applying the desired serving state: one apply at a time, always the latest state ----
  let applying = false;
  let appliedGeneration = 0;
  let generation = state.serving?.generation ?? 0;
  const applyLatest = async (): Promise<ApplyReport | null> => {
    await condition(() => !applying);
    applying = true;
    try {
      const desired = state.serving;
      if (!desired) return null;
      const report = await deploy.applyServing({ model: state.model, desired });
      appliedGeneration = Math.max(appliedGeneration, desired.generation);
      state.lastApply = report;
      return report;
    } finally {
      applying = false;
    }
  };
  /** Records a new desired state and returns once it (or a newer one) has been applied. */
  const desire = async (layout: ServingLayout, note: string): Promise<ServingChange> => {
    state.serving = { ...layout, generation: ++generation, note, since: now() };
    const target = generation;
    let report: ApplyReport | null = null;
    while (appliedGeneration < target) report = await applyLatest();
    return { serving: state.serving, apply: report ?? state.lastApply!, champion: champion() };
  };
  const championLayout = () => championOnly(champion()!, state.championAlias!);

  setHandler(registryStateQuery, () => state);

  setHandler(registerVersionUpdate, (request) => {
    const existing = state.versionByRunId[request.lineage.runId];
    if (existing !== undefined) return { version: existing };
    const version = (state.versions.at(-1)?.version ?? 0) + 1;
    state.versions.push({
      version,
      artifactUri: request.artifactUri,
      metrics: request.metrics,
      lineage: request.lineage,
      blessed: request.blessed,
      reasons: request.reasons,
      status: 'registered',
      rolledBack: null,
      publishedPath: null,
      registeredAt: now(),
      publishedAt: null,
    });
    state.versionByRunId[request.lineage.runId] = version;
    return { version };
  });

  setHandler(
    publishVersionUpdate,
    async (request) => {
      const entry = findVersion(request.version);
      if (entry.status !== 'published') {
        entry.status = 'published';
        entry.publishedPath = request.publishedPath;
        entry.publishedAt = now();
        record({
          kind: 'published',
          version: request.version,
          by: 'pipeline',
          message: `v${request.version} published to ${request.publishedPath}`,
        });
      }
      if (request.alias === null) return { version: request.version, alias: null, previous: null };
      if (request.alias === state.championAlias && champion() === request.version) {
        return { version: request.version, alias: request.alias, previous: request.version };
      }
      const previous = moveAlias(request.alias, request.version);
      if (request.alias === state.championAlias) {
        record({
          kind: 'promoted',
          version: request.version,
          by: 'pipeline',
          message: `v${request.version} is the champion (published without a rollout)`,
        });
        await desire(championLayout(), `champion v${request.version}`);
      }
      return { version: request.version, alias: request.alias, previous };
    },
    {
      validator: (request) => {
        const entry = findVersion(request.version);
        if (!entry.blessed) {
          throw new Error(`version ${request.version} of "${state.model}" is not blessed and cannot be published`);
        }
        if (request.alias === state.championAlias) requireOwner(undefined, 'publish');
      },
    },
  );

  setHandler(
    promoteUpdate,
    async ({ version, reason, owner }) => {
      const entry = findVersion(version);
      entry.rolledBack = null;
      moveAlias(state.championAlias!, version);
      record({
        kind: 'promoted',
        version,
        by: owner ?? 'manual',
        message: `v${version} promoted to ${state.championAlias}${reason ? `: ${reason}` : ''}`,
      });
      return desire(championLayout(), `champion v${version} (promoted)`);
    },
    {
      validator: ({ version, owner }) => {
        requirePublished(version);
        requireOwner(owner, 'promote');
      },
    },
  );

  const rollbackTarget = (to: number | undefined): number => {
    const current = champion();
    if (to !== undefined) return to;
    const previous = [...state.championHistory!].reverse().find((v) => v !== current && !findVersion(v).rolledBack);
    if (previous === undefined)
      throw new Error(`model "${state.model}" has no earlier champion to roll back to; name a version with --to`);
    return previous;
  };
  setHandler(
    rollbackUpdate,
    async ({ to, reason, owner }) => {
      const target = rollbackTarget(to);
      const current = champion();
      const reasons = [reason ?? 'manual rollback'];
      if (current !== null && current !== target) findVersion(current).rolledBack = { at: now(), reasons };
      findVersion(target).rolledBack = null;
      moveAlias(state.championAlias!, target);
      record({
        kind: 'rolled-back',
        version: current,
        by: owner ?? 'manual',
        message: `rolled back from v${current ?? '-'} to v${target}: ${reasons.join('; ')}`,
      });
      return {
        ...(await desire(championLayout(), `champion v${target} (rolled back from v${current ?? '-'})`)),
        rolledBack: current,
      };
    },
    {
      validator: ({ to, owner }) => {
        requireOwner(owner, 'rollback');
        const target = rollbackTarget(to);
        requirePublished(target);
        const current = champion();
        if (to !== undefined && current !== null && to >= current) {
          throw new Error(
            `rollback --to ${to}: only an earlier version than the champion v${current} (use promote to move forward)`,
          );
        }
      },
    },
  );

  setHandler(
    claimTrafficUpdate,
    ({ owner, kind, version }) => {
      if (state.trafficOwner?.id === owner) return state.trafficOwner;
      state.trafficOwner = { id: owner, kind, version, since: now() };
      record({
        kind: kind === 'rollout' ? 'rollout' : 'experiment',
        version,
        by: owner,
        message: `${kind} ${owner} took "${state.model}"'s traffic`,
      });
      return state.trafficOwner;
    },
    {
      validator: ({ owner, version }) => {
        const holder = state.trafficOwner;
        if (holder && holder.id !== owner) {
          throw new Error(
            `the ${holder.kind} ${holder.id} (version ${holder.version ?? '-'}) already steers "${state.model}"'s traffic since ${holder.since}; two never run at once`,
          );
        }
        if (version !== null) requirePublished(version);
      },
    },
  );

  setHandler(releaseTrafficUpdate, async ({ owner, note }) => {
    if (state.trafficOwner?.id !== owner) return null;
    state.trafficOwner = null;
    return champion() === null
      ? null
      : desire(championLayout(), note ?? `champion v${champion()} (traffic released by ${owner})`);
  });

  setHandler(setServingUpdate, async ({ owner, layout, note }) => desire(layout, note), {
    validator: ({ owner, layout }) => {
      requireOwner(owner, 'set serving');
      for (const version of layout.versions) requirePublished(version);
    },
  });

  setHandler(
    concludeUpdate,
    async ({ owner, candidate, outcome, reasons, details }) => {
      const entry = findVersion(candidate);
      if (outcome === 'promoted') {
        entry.rolledBack = null;
        moveAlias(state.championAlias!, candidate);
      } else {
        entry.rolledBack = { at: now(), reasons };
      }
      record({
        kind: outcome === 'promoted' ? 'promoted' : 'rolled-back',
        version: candidate,
        by: owner,
        message: `v${candidate} ${outcome}: ${reasons.join('; ')}`,
        details,
      });
      state.trafficOwner = null;
      const current = champion();
      // Nothing was ever promoted: serve nothing rather than a rolled-back candidate.
      if (current === null) return desire(noVersions(), `v${candidate} rolled back; no champion`);
      return desire(
        championLayout(),
        outcome === 'promoted'
          ? `champion v${candidate} (rollout promoted it)`
          : `champion v${current} (v${candidate} rolled back)`,
      );
    },
    {
      validator: ({ owner, candidate }) => {
        requireOwner(owner, 'conclude');
        requirePublished(candidate);
      },
    },
  );

  setHandler(recordEventUpdate, ({ owner, kind, version, message, details }) =>
    record({ kind, version, by: owner, message, details }),
  );

  // An entity workflow never finishes. It re-applies the desired serving state every
  // `reconcileInterval` (a restarted or new server gets it back; unchanged servers are only
  // read), and hands its state to a fresh run when its history would otherwise grow large.
  const mustContinue = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxHistoryEvents;
  while (!mustContinue()) {
    await condition(mustContinue, reconcileInterval);
    if (mustContinue() || !state.serving) continue;
    try {
      await applyLatest();
    } catch (error) {
      log.warn('reconcile failed; trying again next interval', { error: (error as Error).message });
    }
  }
  await condition(() => allHandlersFinished() && !applying);
  await continueAsNew<typeof registryWorkflow>({ model: input.model, state, maxHistoryEvents, reconcileInterval });
}
// Activities start it by name with this signature (workflows/api.ts): the two must agree.
registryWorkflow satisfies RegistryWorkflow;
