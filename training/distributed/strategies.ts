import { ReplicasDiverged } from '../diverged';
import type { Ring } from '../loop';
import type { ReplicaEngine } from '../replica-engine';

/**
 * The rings of synchronous data-parallel training (training/loop.ts walks the batches). Each
 * replica computes the gradients of its own shard of a global batch, scaled by 1 / global batch;
 * the strategy then combines them:
 *
 * - `multi-worker-mirrored` / `mirrored`: ring all-reduce (sum) of the gradients, and every replica
 *   applies the same update to its own copy of the variables — they stay bit-identical, because
 *   the all-reduce leaves the same bytes on every rank.
 * - `central-storage`: the gradients are reduced to rank 0, which alone holds the optimizer state
 *   and applies the update; the new variables are broadcast back.
 *
 * The summed gradient is exactly the gradient one trainer would compute on the whole global
 * batch, so N replicas reach the weights one replica reaches (up to float summation order).
 */

export type StrategyName = 'mirrored' | 'multi-worker-mirrored' | 'central-storage';

/** The collective operations a replica uses (collectives' CollectiveGroup). */
export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(data: Float32Array, options?: { op?: 'sum' | 'mean' }): Promise<Float32Array>;
  broadcast(data: Float32Array, root: number): Promise<Float32Array>;
  reduce(data: Float32Array, root: number, options?: { op?: 'sum' | 'mean' }): Promise<Float32Array>;
}

export interface StrategyRingOptions {
  /** Compare every replica's weights with rank 0's after each step; a difference fails the job. */
  verifyReplicas?: boolean;
  /**
   * All-reduce strategies: apply each step's update in the next step's gradient session run, where the engine can
   * (default true). The weights are the same; one session run per step instead of two.
   */
  fuseUpdates?: boolean;
}

/** The ring of `collective`'s replicas, combining gradients by `strategy`. */
export function strategyRing(strategy: StrategyName, collective: Collective, options: StrategyRingOptions = {}): Ring {
  const { rank, worldSize } = collective;
  const fuse = options.fuseUpdates ?? true;
  return {
    rank,
    worldSize,
    // Rank 0's variables are the truth: a fresh start or a resume begins from identical copies.
    align: (engine) => broadcastVariables(engine, collective),
    async step(engine, shard, lossScale, seed) {
      const { size } = engine;
      const gradients = shard
        ? engine.computeGradients(shard.xs, shard.ys, lossScale, seed)
        : new Float32Array(size + 2); // an empty shard adds nothing
      if (strategy === 'central-storage') {
        await collective.reduce(gradients, 0, { op: 'sum' });
        if (rank === 0) engine.applyGradients(gradients);
        await broadcastVariables(engine, collective);
        // Only rank 0 saw the summed loss: share it so every replica reports the same.
        const totals = Float32Array.of(gradients[size]!, gradients[size + 1]!);
        await collective.broadcast(totals, 0);
        return { lossSum: totals[0]!, correct: totals[1]! };
      }
      await collective.allReduce(gradients, { op: 'sum' });
      if (fuse && engine.deferGradients) engine.deferGradients(gradients);
      else engine.applyGradients(gradients);
      return { lossSum: gradients[size]!, correct: gradients[size + 1]! };
    },
    verify: options.verifyReplicas ? (engine, globalStep) => verify(engine, collective, globalStep) : undefined,
  };
}

/** Every rank takes rank 0's variables. */
async function broadcastVariables(engine: ReplicaEngine, collective: Collective): Promise<void> {
  const variables = collective.rank === 0 ? engine.readVariables() : new Float32Array(engine.size);
  await collective.broadcast(variables, 0);
  if (collective.rank !== 0) engine.writeVariables(variables);
}

/** Rank 0 broadcasts its variables; every other rank must hold the same bytes. */
async function verify(engine: ReplicaEngine, collective: Collective, globalStep: number): Promise<void> {
  const mine = engine.readVariables();
  const reference = collective.rank === 0 ? Float32Array.from(mine) : new Float32Array(mine.length);
  await collective.broadcast(reference, 0);
  let differing = 0;
  for (let i = 0; i < mine.length; i++) if (mine[i] !== reference[i]) differing++;
  const total = Float32Array.of(differing);
  await collective.allReduce(total, { op: 'sum' });
  if (total[0]! > 0)
    throw new ReplicasDiverged(`replicas diverged after step ${globalStep}: ${total[0]} weights differ from rank 0's`);
}
