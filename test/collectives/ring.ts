import { CollectiveGroup, type CollectiveGroupOptions } from '../../collectives';

/** Shared by the collective tests: rings of in-process ranks on loopback, and reference data. */

/** The attempt secret of the test rings (a fixed one: what matters in these tests is that ranks share it). */
export const TEST_SECRET = Buffer.alloc(32, 0x5a);

export type RingOptions = Partial<CollectiveGroupOptions>;

/** N groups listening on free loopback ports, connected into one ring. */
export async function makeRing(n: number, options: RingOptions = {}): Promise<CollectiveGroup[]> {
  const groups = await Promise.all(
    Array.from({ length: n }, () =>
      CollectiveGroup.listen({ jobId: 'job-test', attempt: 1, secret: TEST_SECRET, timeoutMs: 2000, ...options }),
    ),
  );
  const peers = groups.map((group, rank) => ({ rank, ...group.address }));
  await Promise.all(groups.map((group, rank) => group.connect({ rank, peers, timeoutMs: 5000 })));
  return groups;
}

export async function closeAll(groups: readonly CollectiveGroup[]): Promise<void> {
  await Promise.all(groups.map((group) => group.close()));
}

/** Deterministic values in [-1, 1) that differ per rank and per element (a small LCG). */
export function rankData(rank: number, length: number, seed = 1): Float32Array {
  const data = new Float32Array(length);
  let state = (seed * 2654435761 + rank * 40503 + 12345) >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 31 - 1;
  }
  return data;
}

/** Element-wise sum over ranks in float64: the reference the float32 ring result is checked against. */
export function referenceSum(inputs: readonly Float32Array[]): Float64Array {
  const sum = new Float64Array(inputs[0]?.length ?? 0);
  for (const input of inputs) for (let i = 0; i < input.length; i++) sum[i] = sum[i]! + input[i]!;
  return sum;
}

/** Largest |actual − expected| − tolerance·(1 + |expected|); ≤ 0 means within tolerance everywhere. */
export function worstError(actual: Float32Array, expected: ArrayLike<number>, tolerance: number): number {
  let worst = -Infinity;
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i]!;
    worst = Math.max(worst, Math.abs(actual[i]! - e) - tolerance * (1 + Math.abs(e)));
  }
  return actual.length === 0 ? 0 : worst;
}

export function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
