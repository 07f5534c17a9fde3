import { describe, expect, it, vi } from 'vitest';
import { Batcher, BusyTurns } from '../../serving/batcher';
import type { BatchingOptions } from '../../serving/config';
import type { DenseTensor } from '../../serving/tensors';
import { FakeLoader, managerWith, modelConfig, rowsOf, snapshot, valuesOf } from './fakes';

// The manager's only way to TensorFlow is the file loader; these tests inject a fake one.
vi.mock('../../serving/loader', () => ({
  loadServable: () => Promise.reject(new Error('the file loader is not used in unit tests')),
}));

/** A batcher over a model that adds 100 to each row, recording each call's rows and each observation. */
function batcherWith(options: Partial<BatchingOptions>, run?: (inputs: DenseTensor[]) => DenseTensor[]) {
  const calls: number[][] = [];
  const batches: number[] = [];
  const batcher = new Batcher(
    (inputs) => {
      calls.push([...inputs[0]!.data]);
      return run ? run(inputs) : rowsOf(...[...inputs[0]!.data].map((x) => x + 100));
    },
    { enabled: true, max_batch_size: 64, batch_timeout_micros: 0, max_enqueued_batches: 64, ...options },
    { batch: (rows) => batches.push(rows), queued: () => {} },
  );
  return { batcher, calls, batches };
}

/** Lets the event loop reach its check phase: the batcher's end of turn runs before this resolves. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

const outputsOf = async (answer: DenseTensor[] | Promise<DenseTensor[]>) => valuesOf(await answer);

describe('Batcher', () => {
  it('runs a request to an idle version at once, inside the caller’s turn', () => {
    const { batcher, calls } = batcherWith({ batch_timeout_micros: 1_000_000 });
    const answer = batcher.submit(rowsOf(1, 2));
    expect(Array.isArray(answer)).toBe(true);
    expect(valuesOf(answer as DenseTensor[])).toEqual([101, 102]);
    expect(calls).toEqual([[1, 2]]);
  });

  it('answers on the spot a request read in the turn after one that ran on the spot (concurrency 1)', async () => {
    const { batcher, calls } = batcherWith({ batch_timeout_micros: 1_000_000 });
    expect(Array.isArray(batcher.submit(rowsOf(1)))).toBe(true);
    // The previous answer is written; the next request comes in a later turn (after this check phase).
    await nextTurn();
    const answer = batcher.submit(rowsOf(2));
    expect(Array.isArray(answer)).toBe(true);
    expect(calls).toEqual([[1], [2]]);
  });

  it('keeps queueing in the turn after a batch ran, and answers on the spot once a turn passed quietly', async () => {
    const { batcher, calls } = batcherWith({});
    batcher.submit(rowsOf(0));
    const merged = [rowsOf(1), rowsOf(2)].map((rows) => batcher.submit(rows));
    await nextTurn(); // the batch [1, 2] ran at the end of that turn
    const next = batcher.submit(rowsOf(3));
    expect(next).toBeInstanceOf(Promise);
    expect(await Promise.all([...merged, next].map(outputsOf))).toEqual([[101], [102], [103]]);
    await nextTurn();
    expect(Array.isArray(batcher.submit(rowsOf(4)))).toBe(true);
    expect(calls).toEqual([[0], [1, 2], [3], [4]]);
  });

  it('merges requests that arrive while it is busy into batches of up to max_batch_size rows', async () => {
    const { batcher, calls, batches } = batcherWith({ max_batch_size: 4 });
    // The first runs on the spot; the rest arrive in the same turn, so they queue and merge.
    const answers = [1, 2, 3, 4, 5, 6, 7].map((x) => batcher.submit(rowsOf(x)));
    const outputs = await Promise.all(answers.map(outputsOf));
    expect(outputs).toEqual([[101], [102], [103], [104], [105], [106], [107]]);
    expect(calls).toEqual([[1], [2, 3, 4, 5], [6, 7]]);
    expect(batches).toEqual([1, 4, 2]);
  });

  it('keeps a multi-row request whole, and gives each request its own rows back', async () => {
    const { batcher, calls } = batcherWith({ max_batch_size: 4 });
    batcher.submit(rowsOf(0));
    const answers = [rowsOf(1, 2), rowsOf(3, 4, 5), rowsOf(6)].map((rows) => batcher.submit(rows));
    expect(await Promise.all(answers.map(outputsOf))).toEqual([[101, 102], [103, 104, 105], [106]]);
    // 2 + 3 rows exceed 4: the second request waits for the next batch rather than being split.
    expect(calls.slice(1)).toEqual([
      [1, 2],
      [3, 4, 5, 6],
    ]);
  });

  it('flushes a batch that is not full when batch_timeout_micros has passed', async () => {
    const { batcher, calls } = batcherWith({ max_batch_size: 8, batch_timeout_micros: 30_000 });
    batcher.submit(rowsOf(0));
    const started = performance.now();
    const answers = [rowsOf(1), rowsOf(2)].map((rows) => batcher.submit(rows));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toHaveLength(1); // still waiting for more rows
    expect(await Promise.all(answers.map(outputsOf))).toEqual([[101], [102]]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(calls.slice(1)).toEqual([[1, 2]]);
  });

  it('does not wait for the timeout once a batch is full', async () => {
    const { batcher, calls } = batcherWith({ max_batch_size: 2, batch_timeout_micros: 5_000_000 });
    batcher.submit(rowsOf(0));
    const started = performance.now();
    const answers = [rowsOf(1), rowsOf(2)].map((rows) => batcher.submit(rows));
    expect(await Promise.all(answers.map(outputsOf))).toEqual([[101], [102]]);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(calls.slice(1)).toEqual([[1, 2]]);
  });

  it('fails every request merged into a batch whose model call fails', async () => {
    const failure = new Error('kernel failed');
    const { batcher } = batcherWith({}, (inputs) => {
      if (inputs[0]!.shape[0]! > 1) throw failure;
      return rowsOf(0);
    });
    batcher.submit(rowsOf(0));
    const answers = [rowsOf(1), rowsOf(2), rowsOf(3)].map((rows) => batcher.submit(rows));
    const settled = await Promise.allSettled(answers);
    expect(settled).toEqual([1, 2, 3].map(() => ({ status: 'rejected', reason: failure })));
  });

  it('refuses requests beyond its queue bound with RESOURCE_EXHAUSTED, and all requests once closed', async () => {
    const { batcher } = batcherWith({ max_batch_size: 2, max_enqueued_batches: 1 });
    batcher.submit(rowsOf(0));
    const queued = [batcher.submit(rowsOf(1)), batcher.submit(rowsOf(2))];
    expect(() => batcher.submit(rowsOf(3))).toThrow(expect.objectContaining({ code: 'RESOURCE_EXHAUSTED' }));
    batcher.close();
    expect(() => batcher.submit(rowsOf(4))).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    // What was queued before the close still runs.
    expect(await Promise.all(queued.map(outputsOf))).toEqual([[101], [102]]);
  });

  it('keeps one queue per version: concurrent requests to two versions never share a model call', async () => {
    const loader = new FakeLoader();
    const batching = { enabled: true, max_batch_size: 64, batch_timeout_micros: 0, max_enqueued_batches: 64 };
    const { manager } = managerWith(loader, batching);
    await manager.apply([snapshot(modelConfig('m'), [1, 2])]);
    const one = manager.acquire('m', 1)!;
    const two = manager.acquire('m', 2)!;
    const answers = [1, 2, 3, 4].flatMap((x) => [one.batcher.submit(rowsOf(x)), two.batcher.submit(rowsOf(x + 10))]);
    const outputs = await Promise.all(answers.map(outputsOf));
    expect(outputs).toEqual([[1001], [2011], [1002], [2012], [1003], [2013], [1004], [2014]]);
    expect(loader.calls.get(1)).toEqual([[1], [2, 3, 4]]);
    expect(loader.calls.get(2)).toEqual([[11], [12, 13, 14]]);
    one.release();
    two.release();
    await manager.close();
  });
});

describe('BusyTurns (the inline decision)', () => {
  it('is idle until a model call, and an on-the-spot call keeps only the rest of its own turn busy', () => {
    const turns = new BusyTurns();
    expect(turns.busy).toBe(false);
    turns.ranInline();
    expect(turns.busy).toBe(true); // a second request read in this turn merges with later ones
    expect(turns.endTurn()).toBe(false); // no end of turn need be reported any more
    expect(turns.busy).toBe(false); // the next request (concurrency 1) runs on the spot
    turns.ranInline();
    turns.ranInline();
    expect(turns.endTurn()).toBe(false);
    expect(turns.busy).toBe(false);
  });

  it('keeps the turn after a batch busy, then turns idle', () => {
    const turns = new BusyTurns();
    turns.ranInline();
    turns.ranBatch(); // requests read with the first one queued and ran at the end of the turn
    expect(turns.endTurn()).toBe(true);
    expect(turns.busy).toBe(true);
    turns.ranInline(); // cannot happen while busy, but must not shorten the busy span
    expect(turns.endTurn()).toBe(false);
    expect(turns.busy).toBe(false);
  });

  it('stays busy turn after turn while every turn runs a batch (a loaded server)', () => {
    const turns = new BusyTurns();
    for (let i = 0; i < 5; i++) {
      turns.ranBatch();
      expect(turns.endTurn()).toBe(true);
      expect(turns.busy).toBe(true);
    }
    expect(turns.endTurn()).toBe(false);
    expect(turns.busy).toBe(false);
  });
});
