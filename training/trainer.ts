import type { EpochMetrics } from './checkpoint';
import { type DataPosition, RING_OF_ONE, type LoopInputs, type ReplicaLoopOptions, replicaLoop } from './loop';
import { createReplicaEngine, type ExecutionReport } from './replica-engine';

export type { ExecutionReport } from './replica-engine';
export type { StepProgress } from './loop';

/** What a lone trainer is given: the loop's own options, less the engine and ring it makes itself. */
export interface TrainLoopOptions extends LoopInputs, Pick<ReplicaLoopOptions, 'learningRateAt' | 'signal' | 'onStep'> {
  /** Epochs already done (from a checkpoint): training continues with epoch `startEpoch`. */
  startEpoch: number;
  startGlobalStep: number;
  /**
   * `auto` (default) runs each step as one TensorFlow graph where the backend and model allow
   * (see graph/), else eagerly; `eager` always runs op by op.
   */
  execution?: 'auto' | 'eager';
  /** Told once, before the first step, how the steps run and why. */
  onExecution?(execution: ExecutionReport): void;
  /** Awaited before the next epoch starts: the place to write a checkpoint. */
  onEpochEnd(metrics: EpochMetrics, position: DataPosition): Promise<void>;
}

/**
 * A trainer alone: a ring of one in the one training loop (loop.ts), with its own engine — one
 * TensorFlow graph per step where it compiles, else eager — made for the run and freed after it.
 */
export async function trainLoop(options: TrainLoopOptions): Promise<EpochMetrics[]> {
  const { execution: mode, onExecution, startEpoch, startGlobalStep, ...loop } = options;
  const { engine, execution } = await createReplicaEngine(
    loop.model,
    loop.optimizer,
    loop.featureShape,
    loop.numClasses,
    mode,
    loop.task,
  );
  onExecution?.(execution);
  try {
    const start = { epoch: startEpoch, stepInEpoch: 0, globalStep: startGlobalStep };
    const { history } = await replicaLoop({ ...loop, engine, ring: RING_OF_ONE, start });
    return history;
  } finally {
    engine.dispose();
  }
}
