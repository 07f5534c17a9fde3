import { describe, expect, it, vi } from 'vitest';
import { ServingError } from '../../serving/errors';
import { Router, stableUnit } from '../../serving/router';
import { ServingState, type Traffic } from '../../serving/state';
import { thrownBy } from '../helpers/errors';
import { FakeLoader, managerWith, modelConfig, snapshot } from './fakes';

// The manager's only way to TensorFlow is the file loader; these tests inject a fake one.
vi.mock('../../serving/loader', () => ({
  loadServable: () => Promise.reject(new Error('the file loader is not used in unit tests')),
}));

/** The router over a manager with versions 1 and 2 of model "m" AVAILABLE (labels stable → 1, canary → 2). */
async function routerWith(traffic?: Traffic, versions = [1, 2]) {
  const loader = new FakeLoader();
  const { manager } = managerWith(loader);
  const config = modelConfig('m', { stable: 1, canary: 2, gone: 9 });
  await manager.apply([snapshot(config, versions)]);
  const state = await ServingState.open({ modelConfig: { model_config_list: { config: [config] } } });
  if (traffic) await state.setTraffic('m', traffic);
  return { router: new Router(manager, state), manager, loader };
}

function share(router: Router, version: number, keys = 10_000): number {
  let hits = 0;
  for (let i = 0; i < keys; i++) if (router.pick('m', {}, `client-${i}`).version === version) hits++;
  return hits / keys;
}

describe('Router', () => {
  it('sends a request that names a version or a label there, and one that names neither to the latest', async () => {
    const { router } = await routerWith();
    expect(router.pick('m', { version: 1 }, undefined)).toEqual({ version: 1, reason: 'version' });
    expect(router.pick('m', { label: 'stable' }, undefined)).toEqual({ version: 1, reason: 'label' });
    expect(router.pick('m', { label: 'canary' }, 'key')).toEqual({ version: 2, reason: 'label' });
    expect(router.pick('m', {}, undefined)).toEqual({ version: 2, reason: 'latest' });
  });

  it('refuses unknown models, labels and versions that are not AVAILABLE with NOT_FOUND', async () => {
    const { router } = await routerWith();
    const codeOf = (call: () => unknown) => thrownBy(ServingError, call).code;
    expect(codeOf(() => router.pick('nope', {}, undefined))).toBe('NOT_FOUND');
    expect(codeOf(() => router.pick('m', { version: 3 }, undefined))).toBe('NOT_FOUND');
    expect(codeOf(() => router.pick('m', { label: 'missing' }, undefined))).toBe('NOT_FOUND');
    expect(() => router.pick('m', { label: 'gone' }, undefined)).toThrow(/label "gone" \(version 9\)/);
  });

  it('answers UNAVAILABLE while the only version is still loading', async () => {
    const loader = new FakeLoader();
    loader.auto = false;
    const { manager } = managerWith(loader);
    const config = modelConfig('m');
    const applied = manager.apply([snapshot(config, [1])]);
    const router = new Router(manager, await ServingState.open({}));
    expect(() => router.pick('m', {}, undefined)).toThrow(
      expect.objectContaining({ code: 'UNAVAILABLE', message: expect.stringMatching(/loading/) }),
    );
    loader.pending.shift()!.resolve();
    await applied;
    expect(router.pick('m', {}, undefined).version).toBe(1);
  });

  it('splits by weight: 80/20 over 10,000 client keys within ±2 points', async () => {
    const { router } = await routerWith({
      split: [
        { version: 1, weight: 80 },
        { label: 'canary', weight: 20 },
      ],
    });
    expect(router.pick('m', {}, 'a').reason).toBe('split');
    expect(share(router, 2)).toBeGreaterThan(0.18);
    expect(share(router, 2)).toBeLessThan(0.22);
    // A named version still wins over the split.
    expect(router.pick('m', { version: 2 }, 'a')).toEqual({ version: 2, reason: 'version' });
  });

  it('keeps a client key on one version for as long as the split stands', async () => {
    const { router } = await routerWith({
      split: [
        { version: 1, weight: 50 },
        { version: 2, weight: 50 },
      ],
    });
    for (const key of ['alice', 'bob', 'carol', 'dave']) {
      const first = router.pick('m', {}, key).version;
      for (let i = 0; i < 50; i++) expect(router.pick('m', {}, key).version).toBe(first);
    }
    // The bucket comes from a stable hash of (model, key): the same in every process.
    expect(stableUnit('m', 'alice')).toBe(stableUnit('m', 'alice'));
    expect(stableUnit('m', 'alice')).not.toBe(stableUnit('other', 'alice'));
  });

  it('gives the weight of a target that is not AVAILABLE to the others', async () => {
    const { router } = await routerWith({
      split: [
        { version: 1, weight: 10 },
        { version: 3, weight: 90 },
      ],
    });
    expect(share(router, 1, 1000)).toBe(1);
  });

  it('copies a shadow percentage of requests to the shadow version, never to the version that served', async () => {
    const always = await routerWith({ shadow: { label: 'canary', percent: 100 } });
    expect(always.router.shadow('m', 1)).toBe(2);
    expect(always.router.shadow('m', 2)).toBeUndefined();
    const never = await routerWith({ shadow: { version: 2, percent: 0 } });
    expect(never.router.shadow('m', 1)).toBeUndefined();
    const none = await routerWith();
    expect(none.router.shadow('m', 1)).toBeUndefined();
    const some = await routerWith({ shadow: { version: 2, percent: 30 } });
    let copies = 0;
    for (let i = 0; i < 10_000; i++) if (some.router.shadow('m', 1) === 2) copies++;
    expect(copies / 10_000).toBeGreaterThan(0.27);
    expect(copies / 10_000).toBeLessThan(0.33);
  });
});
