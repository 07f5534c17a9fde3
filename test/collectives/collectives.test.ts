import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveGroup, splitEvenly } from '../../collectives';
import { closeAll, makeRing, rankData, referenceSum, sameBytes, worstError } from './ring';

// Float32 sums of N values in [-1, 1) against a float64 reference.
const TOLERANCE = 1e-5;

it('splits lengths into N nearly equal segments, the first length % N one longer', () => {
  expect(splitEvenly(10, 4)).toEqual([
    [0, 3],
    [3, 6],
    [6, 8],
    [8, 10],
  ]);
  expect(splitEvenly(2, 4)).toEqual([
    [0, 1],
    [1, 2],
    [2, 2],
    [2, 2],
  ]);
  expect(splitEvenly(0, 3)).toEqual([
    [0, 0],
    [0, 0],
    [0, 0],
  ]);
});

// Every collective over both transports of all-reduce: the TCP ring, and shared memory (these
// ranks share a host — and a process, which the shared-memory waits allow for by yielding).
const RINGS = (['off', 'auto'] as const).flatMap((sharedMemory) => [1, 2, 3, 4].map((n) => [n, sharedMemory] as const));

describe.each(RINGS)('a ring of %i (shared memory %s)', (n, sharedMemory) => {
  let groups: CollectiveGroup[];
  // Small chunks so that the bigger sizes exercise many pipelined chunks per segment.
  beforeAll(async () => {
    groups = await makeRing(n, { chunkBytes: 64 * 1024, sharedMemory });
  });
  afterAll(() => closeAll(groups));

  it('knows its ranks and its transport', () => {
    expect(groups.map((group) => group.rank)).toEqual([...Array(n).keys()]);
    expect(groups.every((group) => group.worldSize === n && group.state === 'ready')).toBe(true);
    const transport = n === 1 ? 'none' : sharedMemory === 'off' ? 'tcp' : 'shared-memory';
    expect(groups.every((group) => group.transport.allReduce === transport)).toBe(true);
  });

  it.each([0, 1, 3, Math.max(n - 1, 0), 1000, 1_000_003])(
    'all-reduces %i floats (sum and mean), bit-identical on every rank',
    async (length) => {
      for (const op of ['sum', 'mean'] as const) {
        const inputs = groups.map((_, rank) => rankData(rank, length, length + 1));
        const expected = referenceSum(inputs);
        if (op === 'mean') for (let i = 0; i < expected.length; i++) expected[i] = expected[i]! / n;
        const results = inputs.map((input) => input.slice());
        const returned = await Promise.all(groups.map((group, rank) => group.allReduce(results[rank]!, { op })));
        expect(returned.every((array, rank) => array === results[rank])).toBe(true); // in place
        expect(worstError(results[0]!, expected, TOLERANCE)).toBeLessThanOrEqual(0);
        for (const result of results) expect(sameBytes(result, results[0]!)).toBe(true);
      }
    },
  );

  it('broadcasts from rank 0 and from the last rank', async () => {
    for (const root of new Set([0, n - 1])) {
      for (const length of [0, 5, 300_001]) {
        const arrays = groups.map((_, rank) => rankData(rank, length, 7));
        const expected = arrays[root]!.slice();
        await Promise.all(groups.map((group, rank) => group.broadcast(arrays[rank]!, root)));
        for (const array of arrays) expect(sameBytes(array, expected)).toBe(true);
      }
    }
  });

  it("reduces to a root (sum and mean) and leaves the other ranks' data alone", async () => {
    const root = n > 1 ? 1 : 0;
    for (const op of ['sum', 'mean'] as const) {
      for (const length of [3, 200_003]) {
        const inputs = groups.map((_, rank) => rankData(rank, length, 11));
        const expected = referenceSum(inputs);
        if (op === 'mean') for (let i = 0; i < expected.length; i++) expected[i] = expected[i]! / n;
        const arrays = inputs.map((input) => input.slice());
        await Promise.all(groups.map((group, rank) => group.reduce(arrays[rank]!, root, { op })));
        expect(worstError(arrays[root]!, expected, TOLERANCE)).toBeLessThanOrEqual(0);
        arrays.forEach((array, rank) => rank !== root && expect(sameBytes(array, inputs[rank]!)).toBe(true));
      }
    }
  });

  it('holds every rank at the barrier until the last one arrives', async () => {
    const late = n - 1;
    let lateEntered = Infinity;
    const exits = await Promise.all(
      groups.map(async (group, rank) => {
        if (rank === late) {
          await sleep(100);
          lateEntered = performance.now();
        }
        await group.barrier();
        return performance.now();
      }),
    );
    for (const exit of exits) expect(exit).toBeGreaterThanOrEqual(lateEntered);
  });

  it('runs operations issued back to back in order', async () => {
    const arrays = groups.map((_, rank) => Float32Array.of(rank + 1, 1));
    await Promise.all(
      groups.flatMap((group, rank) => [
        group.allReduce(arrays[rank]!),
        group.barrier(),
        group.broadcast(arrays[rank]!, 0),
        group.allReduce(arrays[rank]!, { op: 'mean' }),
      ]),
    );
    const triangle = (n * (n + 1)) / 2;
    for (const array of arrays) expect(Array.from(array)).toEqual([triangle, n]);
  });
});

it('ranks that close right after their last operation do not fail the neighbours still finishing it', async () => {
  for (let trial = 0; trial < 10; trial++) {
    const groups = await makeRing(3);
    const data = groups.map((_, rank) => rankData(rank, 3000));
    const outcomes = await Promise.allSettled(
      groups.map(async (group, rank) => {
        await group.allReduce(data[rank]!);
        await group.barrier();
        await group.close();
      }),
    );
    expect(outcomes.map((outcome) => (outcome.status === 'rejected' ? String(outcome.reason) : 'ok'))).toEqual([
      'ok',
      'ok',
      'ok',
    ]);
  }
});

it('works on a view into a larger buffer and leaves the rest of it alone', async () => {
  const groups = await makeRing(3, { chunkBytes: 4096 });
  try {
    const backing = groups.map((_, rank) => rankData(rank, 10_007, 3));
    const before = backing.map((array) => array.slice());
    const views = backing.map((array) => array.subarray(1, 10_000));
    await Promise.all(groups.map((group, rank) => group.allReduce(views[rank]!)));
    const expected = referenceSum(before.map((array) => array.subarray(1, 10_000)));
    for (const [rank, array] of backing.entries()) {
      expect(worstError(views[rank]!, expected, TOLERANCE)).toBeLessThanOrEqual(0);
      expect([array[0], ...array.subarray(10_000)]).toEqual([before[rank]![0], ...before[rank]!.subarray(10_000)]);
    }
  } finally {
    await closeAll(groups);
  }
});

it('refuses bad arguments without touching the ring', async () => {
  const groups = await makeRing(2);
  try {
    await expect(groups[0]!.broadcast(new Float32Array(1), 2)).rejects.toThrow(
      'broadcast: root 2 is not a rank of this ring (0–1)',
    );
    await expect(groups[0]!.allReduce([1, 2] as unknown as Float32Array)).rejects.toThrow(
      'allReduce: data must be a Float32Array',
    );
    const arrays = [Float32Array.of(1), Float32Array.of(2)];
    await Promise.all(groups.map((group, rank) => group.allReduce(arrays[rank]!)));
    expect(arrays.map((array) => array[0])).toEqual([3, 3]);
  } finally {
    await closeAll(groups);
  }
});
