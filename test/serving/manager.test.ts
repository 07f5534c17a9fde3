import { describe, expect, it, vi } from 'vitest';
import { FakeLoader, managerWith, modelConfig, rowsOf, snapshot, valuesOf } from './fakes';

// The manager's only way to TensorFlow is the file loader; these tests inject a fake one.
vi.mock('../../serving/loader', () => ({
  loadServable: () => Promise.reject(new Error('the file loader is not used in unit tests')),
}));

/**
 * The manager on its own, as TF Serving tests its AspiredVersionsManager: aspired versions in,
 * version states out, with a loader the test drives.
 */

const model = modelConfig('m');
const states = (manager: ReturnType<typeof managerWith>['manager']) =>
  Object.fromEntries(manager.status('m').map((s) => [s.version, s.state]));

/** Lets the manager's pending promise callbacks run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('VersionManager', () => {
  it('moves a version START → LOADING → AVAILABLE → UNLOADING → END', async () => {
    const loader = new FakeLoader();
    loader.auto = false;
    const { manager, log } = managerWith(loader);

    const applied = manager.apply([snapshot(model, [1])]);
    expect(states(manager)).toEqual({ 1: 'LOADING' });
    expect(manager.loading()).toBe(true);
    expect(manager.acquire('m', 1)).toBeUndefined();
    loader.pending.shift()!.resolve();
    await applied;
    expect(states(manager)).toEqual({ 1: 'AVAILABLE' });
    expect(manager.availableVersions('m')).toEqual([1]);

    // Held by a request, so the unload waits for it: UNLOADING is visible.
    const handle = manager.acquire('m', 1)!;
    const swapped = manager.apply([snapshot(model, [2])]);
    loader.pending.shift()!.resolve();
    await swapped;
    expect(states(manager)).toMatchObject({ 1: 'UNLOADING', 2: 'AVAILABLE' });
    handle.release();
    await settle();
    // END: a clean unload leaves no record behind.
    expect(states(manager)).toEqual({ 2: 'AVAILABLE' });
    const version1 = log.lines.filter((l) => l.startsWith('model m version 1: '));
    expect(version1.map((l) => l.split(' ')[4])).toEqual(['AVAILABLE', 'UNLOADING', 'END']);
  });

  it('loads the new version and makes it AVAILABLE before it unloads the old one', async () => {
    const loader = new FakeLoader();
    const { manager } = managerWith(loader);
    await manager.apply([snapshot(model, [1])]);

    loader.auto = false;
    const applied = manager.apply([snapshot(model, [2])]);
    await settle();
    // While version 2 loads, version 1 still answers.
    expect(states(manager)).toEqual({ 2: 'LOADING', 1: 'AVAILABLE' });
    const handle = manager.acquire('m', 1);
    expect(handle).toBeDefined();
    handle!.release();
    loader.pending.shift()!.resolve();
    await applied;
    await settle();
    expect(states(manager)).toEqual({ 2: 'AVAILABLE' });
    expect(loader.events).toEqual(['load 1', 'load 2', 'dispose 1']);
  });

  it('loads aspired versions newest first and keeps every aspired version', async () => {
    const loader = new FakeLoader();
    const { manager } = managerWith(loader);
    await manager.apply([snapshot(model, [1, 3, 2])]);
    expect(loader.events).toEqual(['load 3', 'load 2', 'load 1']);
    expect(manager.availableVersions('m')).toEqual([1, 2, 3]);
    await manager.apply([snapshot(model, [2, 3])]);
    await settle();
    expect(manager.availableVersions('m')).toEqual([2, 3]);
    expect(loader.events.at(-1)).toBe('dispose 1');
  });

  it('ends a failed load with its error, keeps the old version serving, and retries only changed files', async () => {
    const loader = new FakeLoader();
    const { manager } = managerWith(loader);
    await manager.apply([snapshot(model, [1])]);

    loader.failures.set(2, 'model.json is not JSON');
    await manager.apply([snapshot(model, [2])]);
    expect(manager.status('m')).toEqual([
      { version: 2, state: 'END', error: 'model.json is not JSON' },
      { version: 1, state: 'AVAILABLE' },
    ]);
    // The last AVAILABLE version stays: a broken publish cannot take the model down.
    expect(manager.availableVersions('m')).toEqual([1]);

    // The same files are not tried again on every poll...
    await manager.apply([snapshot(model, [2])]);
    expect(loader.events.filter((e) => e === 'load 2')).toHaveLength(1);
    // ...changed files are, and so is an explicit reload.
    await manager.apply([snapshot(model, [{ version: 2, path: '/models/m/2', fingerprint: 'fixed' }])]);
    expect(loader.events.filter((e) => e === 'load 2')).toHaveLength(2);
    manager.forgetFailures('m');
    loader.failures.delete(2);
    await manager.apply([snapshot(model, [2])]);
    await settle();
    expect(states(manager)).toEqual({ 2: 'AVAILABLE' });
    expect(loader.events.filter((e) => e === 'load 2')).toHaveLength(3);
  });

  it('drains a handle held during the unload before it disposes the version', async () => {
    const loader = new FakeLoader();
    const { manager } = managerWith(loader);
    await manager.apply([snapshot(model, [1])]);
    const handle = manager.acquire('m', 1)!;
    expect(handle.inFlight).toBe(1);

    manager.removeModel('m');
    expect(manager.hasModel('m')).toBe(false);
    // The request in flight still holds a working model; new requests are refused.
    expect(valuesOf(handle.servable.run(rowsOf(7)))).toEqual([1007]);
    expect(handle.tryAcquire()).toBe(false);
    expect(manager.acquire('m', 1)).toBeUndefined();
    expect(() => handle.batcher.submit(rowsOf(8))).toThrow(/unloading/);

    let closed = false;
    const closing = manager.close().then(() => (closed = true));
    await settle();
    expect(closed).toBe(false);
    expect(loader.events).not.toContain('dispose 1');
    handle.release();
    await closing;
    expect(loader.events).toEqual(['load 1', 'dispose 1']);
  });

  it('unloads the versions of a model that left the configuration, and keeps the others', async () => {
    const loader = new FakeLoader();
    const { manager } = managerWith(loader);
    const other = modelConfig('other');
    await manager.apply([snapshot(model, [1]), snapshot(other, [5])]);
    await manager.apply([snapshot(other, [5])]);
    await settle();
    expect(manager.modelNames()).toEqual(['other']);
    expect(loader.events).toEqual(['load 1', 'load 5', 'dispose 1']);
  });

  it('changes nothing when the base path could not be read', async () => {
    const loader = new FakeLoader();
    const { manager } = managerWith(loader);
    await manager.apply([snapshot(model, [1])]);
    await manager.apply([{ config: model, versions: null, error: 'EACCES' }]);
    expect(states(manager)).toEqual({ 1: 'AVAILABLE' });
  });
});
