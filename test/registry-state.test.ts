import { describe, expect, it } from 'vitest';
import type { RegistryState } from '../workflows/api';
import { completeRegistryState, MAX_EVENTS, ModelRegistry, UnknownVersion } from '../workflows/registry-state';
import { canaryLayout, championOnly } from '../workflows/serving-desired';
import { registerRequest } from './helpers/registry';

/** The registry's state and transitions without Temporal: what the registry workflow's handlers do. */

/** A registry on a clock that ticks a second per reading. */
function newRegistry(state?: RegistryState): ModelRegistry {
  let tick = 0;
  const now = () => new Date(Date.UTC(2026, 0, 1, 0, 0, tick++)).toISOString();
  return new ModelRegistry('fashion', state, now);
}

/** Registers `count` blessed versions (run-1 …) and publishes each without moving an alias. */
function withPublished(count: number): ModelRegistry {
  const registry = newRegistry();
  for (let i = 1; i <= count; i++) {
    registry.register(registerRequest(`run-${i}`));
    registry.publish({ version: i, publishedPath: `/m/${i}`, alias: null });
  }
  return registry;
}

/** Publishes and promotes versions in turn through the `champion` alias, as a pipeline without rollouts does. */
function withChampions(...versions: number[]): ModelRegistry {
  const registry = withPublished(Math.max(...versions));
  for (const version of versions) registry.publish({ version, publishedPath: `/m/${version}`, alias: 'champion' });
  return registry;
}

describe('register', () => {
  it('numbers versions in order and gives a retried run its version back', () => {
    const registry = newRegistry();
    expect(registry.register(registerRequest('run-1'))).toEqual({ version: 1 });
    expect(registry.register(registerRequest('run-2'))).toEqual({ version: 2 });
    expect(registry.register(registerRequest('run-1'))).toEqual({ version: 1 });
    expect(registry.state.versions.map((v) => [v.version, v.lineage.runId, v.status])).toEqual([
      [1, 'run-1', 'registered'],
      [2, 'run-2', 'registered'],
    ]);
    expect(registry.state.versionByRunId).toEqual({ 'run-1': 1, 'run-2': 2 });
  });
});

describe('publish', () => {
  it('publishes once, moves the alias it names and makes the champion alone serve', () => {
    const registry = newRegistry();
    registry.register(registerRequest('run-1'));
    registry.register(registerRequest('run-2'));
    const first = registry.publish({ version: 1, publishedPath: '/m/1', alias: 'champion' });
    expect(first.result).toEqual({ version: 1, alias: 'champion', previous: null });
    expect(first.desired).toMatchObject({ ...championOnly(1, 'champion'), generation: 1, note: 'champion v1' });

    const second = registry.publish({ version: 2, publishedPath: '/m/2', alias: 'champion' });
    expect(second.result).toEqual({ version: 2, alias: 'champion', previous: 1 });
    expect(second.desired?.generation).toBe(2);
    expect(registry.champion()).toBe(2);
    expect(registry.state.championHistory).toEqual([1]);

    // Again (a retried activity): nothing moves, nothing is re-applied.
    expect(registry.publish({ version: 2, publishedPath: '/m/2', alias: 'champion' })).toEqual({
      result: { version: 2, alias: 'champion', previous: 2 },
      desired: null,
    });
    // Another alias moves without touching what the servers serve.
    expect(registry.publish({ version: 1, publishedPath: '/m/1', alias: 'stable' })).toEqual({
      result: { version: 1, alias: 'stable', previous: null },
      desired: null,
    });
    expect(registry.state.aliases).toEqual({ champion: 2, stable: 1 });
    expect(registry.state.versions.map((v) => [v.status, v.publishedPath])).toEqual([
      ['published', '/m/1'],
      ['published', '/m/2'],
    ]);
    expect(registry.state.events.map((e) => e.kind)).toEqual(['published', 'promoted', 'published', 'promoted']);
  });

  it('publishes without an alias when a rollout will decide', () => {
    const registry = newRegistry();
    registry.register(registerRequest('run-1'));
    expect(registry.publish({ version: 1, publishedPath: '/m/1', alias: null })).toEqual({
      result: { version: 1, alias: null, previous: null },
      desired: null,
    });
    expect(registry.state.aliases).toEqual({});
    expect(registry.state.serving).toBeNull();
  });

  it('refuses an unblessed or unknown version', () => {
    const registry = newRegistry();
    registry.register(registerRequest('run-1', false));
    expect(() => registry.checkPublish({ version: 1, publishedPath: '/m/1', alias: 'champion' })).toThrow(
      'version 1 of "fashion" is not blessed and cannot be published',
    );
    expect(() => registry.checkPublish({ version: 7, publishedPath: '/m/7', alias: null })).toThrow(UnknownVersion);
    expect(() => registry.checkPublish({ version: 7, publishedPath: '/m/7', alias: null })).toThrow(
      'model "fashion" has no version 7 (versions: 1)',
    );
  });
});

describe('promote and rollback', () => {
  it('promotes a published version and remembers the champion it replaced', () => {
    const registry = withPublished(2);
    registry.publish({ version: 1, publishedPath: '/m/1', alias: 'champion' });
    expect(() => registry.checkPromote({ version: 2 })).not.toThrow();
    const desired = registry.promote({ version: 2, reason: 'looks good' });
    expect(desired).toMatchObject({ ...championOnly(2, 'champion'), note: 'champion v2 (promoted)' });
    expect(registry.champion()).toBe(2);
    expect(registry.state.championHistory).toEqual([1]);
    expect(registry.state.events.at(-1)).toMatchObject({
      kind: 'promoted',
      version: 2,
      by: 'manual',
      message: 'v2 promoted to champion: looks good',
    });
  });

  it('refuses to promote a version that is not published', () => {
    const registry = withChampions(1);
    registry.register(registerRequest('run-9'));
    expect(() => registry.checkPromote({ version: 2 })).toThrow('version 2 of "fashion" is not published');
  });

  it('rolls back to the last earlier champion that was not rolled back, and marks the one it replaced', () => {
    const registry = withChampions(1, 2, 3);
    expect(registry.state.championHistory).toEqual([1, 2]);
    expect(() => registry.checkRollback({})).not.toThrow();
    const first = registry.rollback({ reason: 'accuracy fell' });
    expect(first.rolledBack).toBe(3);
    expect(first.desired).toMatchObject({ ...championOnly(2, 'champion'), note: 'champion v2 (rolled back from v3)' });
    expect(registry.state.versions[2]!.rolledBack).toEqual({ at: expect.any(String), reasons: ['accuracy fell'] });

    // v3, now in the history, was rolled back: the next rollback skips it and goes to v1.
    const second = registry.rollback({});
    expect(second.rolledBack).toBe(2);
    expect(registry.champion()).toBe(1);
    expect(registry.state.versions[1]!.rolledBack?.reasons).toEqual(['manual rollback']);
    expect(registry.state.events.at(-1)?.message).toBe('rolled back from v2 to v1: manual rollback');
  });

  it('rolls back only to an earlier version, and only when there is one', () => {
    const registry = withChampions(2);
    expect(() => registry.checkRollback({})).toThrow(
      'model "fashion" has no earlier champion to roll back to; name a version with --to',
    );
    expect(() => registry.checkRollback({ to: 2 })).toThrow(
      'rollback --to 2: only an earlier version than the champion v2 (use promote to move forward)',
    );
    expect(() => registry.checkRollback({ to: 1 })).not.toThrow();
    expect(registry.rollback({ to: 1 }).rolledBack).toBe(2);
    expect(registry.champion()).toBe(1);
  });
});

describe('traffic ownership', () => {
  it('lets one rollout or experiment at a time steer the traffic', () => {
    const registry = withChampions(1, 2);
    registry.register(registerRequest('run-3'));
    registry.publish({ version: 3, publishedPath: '/m/3', alias: null });

    const claimed = registry.claimTraffic({ owner: 'rollout-a', kind: 'rollout', version: 3 });
    expect(claimed).toEqual({ id: 'rollout-a', kind: 'rollout', version: 3, since: expect.any(String) });
    // The holder claiming again (a retried activity) gets the same claim.
    expect(() => registry.checkClaimTraffic({ owner: 'rollout-a', kind: 'rollout', version: 3 })).not.toThrow();
    expect(registry.claimTraffic({ owner: 'rollout-a', kind: 'rollout', version: 3 })).toBe(claimed);

    expect(() => registry.checkClaimTraffic({ owner: 'experiment-b', kind: 'experiment', version: null })).toThrow(
      /the rollout rollout-a \(version 3\) already steers "fashion"'s traffic since .*; two never run at once/,
    );
    // While a rollout holds the traffic, no one else moves the champion.
    expect(() => registry.checkPromote({ version: 1 })).toThrow(
      /^promote: the rollout rollout-a \(version 3\) steers "fashion"'s traffic since .*; send it to that rollout/,
    );
    expect(() => registry.checkRollback({ to: 1 })).toThrow(/^rollback: the rollout rollout-a/);
    expect(() => registry.checkPublish({ version: 3, publishedPath: '/m/3', alias: 'champion' })).toThrow(
      /^publish: the rollout rollout-a/,
    );
    expect(() =>
      registry.checkSetServing({ owner: 'experiment-b', layout: championOnly(1, 'champion'), note: '' }),
    ).toThrow(/^set serving: the rollout rollout-a/);

    // Someone else's release changes nothing; the holder's makes the champion alone serve again.
    expect(registry.releaseTraffic({ owner: 'experiment-b' })).toBeNull();
    expect(registry.state.trafficOwner?.id).toBe('rollout-a');
    const released = registry.releaseTraffic({ owner: 'rollout-a' });
    expect(released).toMatchObject({
      ...championOnly(2, 'champion'),
      note: 'champion v2 (traffic released by rollout-a)',
    });
    expect(registry.state.trafficOwner).toBeNull();
    expect(() =>
      registry.checkClaimTraffic({ owner: 'experiment-b', kind: 'experiment', version: null }),
    ).not.toThrow();
  });

  it('refuses an owner that holds nothing, and a claim of an unpublished version', () => {
    const registry = withChampions(1);
    registry.register(registerRequest('run-2'));
    expect(() => registry.checkPromote({ version: 1, owner: 'rollout-x' })).toThrow(
      'promote: rollout-x does not hold "fashion"\'s traffic',
    );
    expect(() => registry.checkClaimTraffic({ owner: 'rollout-x', kind: 'rollout', version: 2 })).toThrow(
      'version 2 of "fashion" is not published (it is registered)',
    );
  });

  it('releases to nothing when there is no champion', () => {
    const registry = withPublished(1);
    registry.claimTraffic({ owner: 'experiment-a', kind: 'experiment', version: null });
    expect(registry.releaseTraffic({ owner: 'experiment-a', note: 'over' })).toBeNull();
    expect(registry.state.serving).toBeNull();
  });
});

describe('setServing and conclude', () => {
  it('lets the holder set what the servers serve, from published versions only', () => {
    const registry = withChampions(1);
    registry.register(registerRequest('run-2'));
    registry.claimTraffic({ owner: 'rollout-a', kind: 'rollout', version: null });
    const canary = canaryLayout(1, 2, 25, 'champion');
    expect(() => registry.checkSetServing({ owner: 'rollout-a', layout: canary, note: 'step 1' })).toThrow(
      'version 2 of "fashion" is not published (it is registered)',
    );
    registry.publish({ version: 2, publishedPath: '/m/2', alias: null });
    expect(() => registry.checkSetServing({ owner: 'rollout-a', layout: canary, note: 'step 1' })).not.toThrow();
    const before = registry.state.serving?.generation ?? 0;
    expect(registry.setServing({ owner: 'rollout-a', layout: canary, note: 'step 1' })).toEqual({
      ...canary,
      generation: before + 1,
      note: 'step 1',
      since: expect.any(String),
    });
  });

  it('promotes the candidate, or marks it rolled back, and releases the traffic', () => {
    const registry = withChampions(1);
    registry.register(registerRequest('run-2'));
    registry.register(registerRequest('run-3'));
    registry.publish({ version: 2, publishedPath: '/m/2', alias: null });
    registry.publish({ version: 3, publishedPath: '/m/3', alias: null });

    registry.claimTraffic({ owner: 'rollout-2', kind: 'rollout', version: 2 });
    expect(() =>
      registry.checkConclude({ owner: 'rollout-3', candidate: 2, outcome: 'promoted', reasons: [] }),
    ).toThrow(/^conclude: the rollout rollout-2/);
    const promoted = registry.conclude({ owner: 'rollout-2', candidate: 2, outcome: 'promoted', reasons: ['passed'] });
    expect(promoted).toMatchObject({ ...championOnly(2, 'champion'), note: 'champion v2 (rollout promoted it)' });
    expect(registry.state.trafficOwner).toBeNull();
    expect(registry.state.championHistory).toEqual([1]);

    registry.claimTraffic({ owner: 'rollout-3', kind: 'rollout', version: 3 });
    const rolledBack = registry.conclude({
      owner: 'rollout-3',
      candidate: 3,
      outcome: 'rolled-back',
      reasons: ['p99 too high'],
      details: { step: 1 },
    });
    expect(rolledBack).toMatchObject({ ...championOnly(2, 'champion'), note: 'champion v2 (v3 rolled back)' });
    expect(registry.champion()).toBe(2);
    expect(registry.state.versions[2]!.rolledBack?.reasons).toEqual(['p99 too high']);
    expect(registry.state.events.at(-1)).toMatchObject({
      kind: 'rolled-back',
      version: 3,
      by: 'rollout-3',
      message: 'v3 rolled-back: p99 too high',
      details: { step: 1 },
    });
  });

  it('serves nothing when the first candidate is rolled back', () => {
    const registry = withPublished(1);
    registry.claimTraffic({ owner: 'rollout-1', kind: 'rollout', version: 1 });
    const desired = registry.conclude({ owner: 'rollout-1', candidate: 1, outcome: 'rolled-back', reasons: ['no'] });
    expect(desired).toMatchObject({ versions: [], labels: {}, split: null, shadow: null });
    expect(desired.note).toBe('v1 rolled back; no champion');
  });
});

describe('the desired serving state and events', () => {
  it('numbers each desired state one generation after the last, and keeps the last apply', () => {
    const registry = newRegistry();
    expect(registry.desire(championOnly(1, 'champion'), 'a').generation).toBe(1);
    expect(registry.desire(championOnly(1, 'champion'), 'b').generation).toBe(2);
    const report = { generation: 2, servers: [{ url: 'http://s', ok: true, changed: [] }] };
    registry.applied(report);
    expect(registry.state.lastApply).toBe(report);
  });

  it(`keeps the most recent ${MAX_EVENTS} events`, () => {
    const registry = newRegistry();
    for (let i = 0; i < MAX_EVENTS + 5; i++) {
      registry.recordEvent({ owner: 'rollout-a', kind: 'rollout', version: null, message: `event ${i}` });
    }
    expect(registry.state.events).toHaveLength(MAX_EVENTS);
    expect(registry.state.events[0]!.message).toBe('event 5');
    expect(registry.state.events.at(-1)).toMatchObject({ by: 'rollout-a', message: `event ${MAX_EVENTS + 4}` });
  });
});

describe('continue-as-new', () => {
  it('carries the whole state over to the next run', () => {
    const registry = withChampions(1, 2);
    registry.claimTraffic({ owner: 'experiment-a', kind: 'experiment', version: null });
    registry.applied({ generation: 2, servers: [] });
    // The next run gets the state through Temporal's JSON payload.
    const next = newRegistry(JSON.parse(JSON.stringify(registry.state)) as RegistryState);
    expect(next.state).toEqual(registry.state);
    expect(next.champion()).toBe(2);
    expect(next.register(registerRequest('run-1'))).toEqual({ version: 1 });
    expect(next.register(registerRequest('run-3'))).toEqual({ version: 3 });
    expect(next.desire(championOnly(2, 'champion'), 'again').generation).toBe(3);
  });

  it("fills in the fields an older run's state lacks", () => {
    const old: RegistryState = {
      model: 'fashion',
      versions: withPublished(1).state.versions,
      aliases: { champion: 1 },
      versionByRunId: { 'run-1': 1 },
    };
    const registry = newRegistry(old);
    expect(registry.state).toEqual({
      ...old,
      championAlias: 'champion',
      championHistory: [],
      serving: null,
      lastApply: null,
      trafficOwner: null,
      events: [],
    });
    expect(registry.champion()).toBe(1);
    expect(completeRegistryState('new-model')).toMatchObject({ model: 'new-model', versions: [], aliases: {} });
  });
});
