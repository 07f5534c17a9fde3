import type * as tfType from '@tensorflow/tfjs';
import { tf } from '../engine/backend';
import type { Task } from './batches';
import { GraphTrainStep } from './graph/graph-step';

/**
 * What a trainer needs from the thing that computes. A trainer alone (a ring of one) runs whole
 * steps; a replica of a data-parallel job takes the gradients of its shard as one flat vector (so
 * one all-reduce moves them), updates from the reduced vector, and reads or writes the variables
 * as one vector (broadcast from rank 0, central storage). The graph step (training/graph/)
 * provides it on tfjs-node; EagerReplicaEngine on every other backend.
 */
export interface ReplicaEngine {
  /** Elements of all trainable variables together. */
  readonly size: number;
  /**
   * One whole step on a batch: gradients of the loss scaled by lossScale (1 / batch), and the
   * update. Returns the batch's loss sum and correct count. `seed` keys the dropout masks.
   */
  step(xs: tfType.Tensor | tfType.Tensor[], ys: tfType.Tensor, lossScale: number, seed: [number, number]): StepResult;
  /**
   * Gradients (scaled by lossScale = 1 / global batch), then the shard's loss sum and correct
   * count. The engine may hand back the same buffer every step: it is valid until the next call.
   */
  computeGradients(
    xs: tfType.Tensor | tfType.Tensor[],
    ys: tfType.Tensor,
    lossScale: number,
    seed: [number, number],
  ): Float32Array;
  applyGradients(flat: Float32Array): void;
  /**
   * Where the engine can: applyGradients, deferred to the next computeGradients' session run ("apply the previous
   * update + compute the next gradients" in one run), or to the first read or write of the variables before it.
   */
  deferGradients?(flat: Float32Array): void;
  readVariables(): Float32Array;
  writeVariables(flat: Float32Array): void;
  /** Makes the tfjs model and optimizer hold the engine's state (before evaluation or a checkpoint). */
  syncToModel(): Promise<void>;
  dispose(): void;
}

export interface StepResult {
  lossSum: number;
  correct: number;
}

export interface ExecutionReport {
  mode: 'graph' | 'eager';
  /** Why the steps run eagerly, when they do. */
  reason?: string;
}

export class EagerReplicaEngine implements ReplicaEngine {
  readonly size: number;
  private readonly variables: tfType.Variable[];

  constructor(
    private readonly model: tfType.LayersModel,
    private readonly optimizer: tfType.Optimizer,
    private readonly task: Task = 'classification',
  ) {
    this.variables = model.trainableWeights.map((w) => w.read() as tfType.Variable);
    this.size = this.variables.reduce((n, v) => n + v.size, 0);
  }

  step(xs: tfType.Tensor | tfType.Tensor[], ys: tfType.Tensor, lossScale: number): StepResult {
    const { grads, lossSum, correct } = this.gradients(xs, ys, lossScale);
    this.optimizer.applyGradients(grads);
    tf.dispose(Object.values(grads));
    return { lossSum, correct };
  }

  computeGradients(xs: tfType.Tensor | tfType.Tensor[], ys: tfType.Tensor, lossScale: number): Float32Array {
    const { grads, lossSum, correct } = this.gradients(xs, ys, lossScale);
    const out = new Float32Array(this.size + 2);
    let offset = 0;
    for (const v of this.variables) {
      out.set(grads[v.name]!.dataSync() as Float32Array, offset);
      offset += v.size;
    }
    out[this.size] = lossSum;
    out[this.size + 1] = correct;
    tf.dispose(Object.values(grads));
    return out;
  }

  /** The forward and backward pass of a batch: each variable's gradient, by variable name. */
  private gradients(xs: tfType.Tensor | tfType.Tensor[], ys: tfType.Tensor, lossScale: number) {
    let lossSum: tfType.Scalar | undefined;
    let correct: tfType.Scalar | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const output = this.model.apply(xs, { training: true }) as tfType.Tensor;
      if (this.task === 'regression') {
        // Squared error summed (the caller's lossScale makes it the mean); nothing is "correct".
        correct = tf.keep(tf.scalar(0));
        lossSum = tf.keep(tf.sum(tf.squaredDifference(output, ys)) as tfType.Scalar);
      } else {
        correct = tf.keep(
          tf.sum(tf.equal(tf.argMax(output, -1), tf.argMax(ys, -1))).asType('float32') as tfType.Scalar,
        );
        lossSum = tf.keep(tf.sum(tf.metrics.categoricalCrossentropy(ys, output)) as tfType.Scalar);
      }
      return tf.mul(lossSum, lossScale) as tfType.Scalar;
    }, this.variables);
    const result = { grads, lossSum: lossSum!.dataSync()[0]!, correct: correct!.dataSync()[0]! };
    tf.dispose([value, lossSum!, correct!]);
    return result;
  }

  applyGradients(flat: Float32Array): void {
    const grads: Record<string, tfType.Tensor> = {};
    let offset = 0;
    for (const v of this.variables) {
      grads[v.name] = tf.tensor(flat.subarray(offset, offset + v.size), v.shape);
      offset += v.size;
    }
    this.optimizer.applyGradients(grads);
    tf.dispose(Object.values(grads));
  }

  readVariables(): Float32Array {
    const out = new Float32Array(this.size);
    let offset = 0;
    for (const v of this.variables) {
      out.set(v.dataSync() as Float32Array, offset);
      offset += v.size;
    }
    return out;
  }

  writeVariables(flat: Float32Array): void {
    let offset = 0;
    for (const v of this.variables) {
      const value = tf.tensor(flat.subarray(offset, offset + v.size), v.shape);
      v.assign(value);
      value.dispose();
      offset += v.size;
    }
  }

  async syncToModel(): Promise<void> {}

  dispose(): void {}
}

/** The graph engine where it compiles, else the eager one; says which and why. */
export async function createReplicaEngine(
  model: tfType.LayersModel,
  optimizer: tfType.Optimizer,
  featureShape: number[],
  numClasses: number,
  execution: 'auto' | 'eager' = 'auto',
  task: Task = 'classification',
): Promise<{ engine: ReplicaEngine; execution: ExecutionReport }> {
  // A model with several inputs (numeric + embedded categoricals) compiles too where its layers are covered; the
  // result says why one does not.
  const graph =
    execution === 'eager'
      ? { unsupported: 'eager execution requested' }
      : await GraphTrainStep.create(model, optimizer, featureShape, numClasses, task);
  if (graph instanceof GraphTrainStep) return { engine: graph, execution: { mode: 'graph' } };
  return {
    engine: new EagerReplicaEngine(model, optimizer, task),
    execution: { mode: 'eager', reason: graph.unsupported },
  };
}
