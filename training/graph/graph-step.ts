import type * as tfType from '@tensorflow/tfjs';
import { tf } from '../../engine/backend';
import type { Task } from '../batches';
import { describeLayers, GraphUnsupported } from '../../engine/forward-graph';
import { GraphSession } from '../../engine/graph-session';
import {
  type CompiledStep,
  type CompileStepOptions,
  compileSequentialStep,
  type OptimizerConfig,
} from './train-step-graph';

/**
 * A training step run as one TensorFlow graph on the native backend (see train-step-graph.ts).
 * The graph owns the variables while an epoch trains; `syncToModel` copies them (and Adam's
 * moments) back into the tfjs model and optimizer, whose state checkpoints, evaluation and
 * publishing keep using — so the graph is purely an accelerator, invisible to everything else.
 */

const TAG = 'gantry-train';

/** Placeholder feeds of one session run, and the tensors made for them (disposed after the run). */
interface Feeds {
  feeds: [string, tfType.Tensor][];
  owned: tfType.Tensor[];
}

export interface GraphStepResult {
  lossSum: number;
  correct: number;
}

interface TfjsAdamState {
  beta1: number;
  beta2: number;
  epsilon: number;
  learningRate: number;
  iterations: number;
}

function optimizerConfig(optimizer: tfType.Optimizer): OptimizerConfig {
  const name = optimizer.getClassName();
  if (name === 'Adam') {
    const adam = optimizer as unknown as TfjsAdamState;
    return { kind: 'adam', beta1: adam.beta1, beta2: adam.beta2, epsilon: adam.epsilon };
  }
  if (name === 'SGD') return { kind: 'sgd', beta1: 0, beta2: 0, epsilon: 0 };
  throw new GraphUnsupported(`the ${name} optimizer`);
}

export class GraphTrainStep {
  private gradientBuffer: Float32Array | undefined;
  /** An update handed to deferGradients, not yet applied: the summed gradients and the update's feeds. */
  private pending: { gradients: tfType.Tensor; update: Feeds } | undefined;

  private constructor(
    private readonly session: GraphSession,
    private readonly compiled: CompiledStep,
    private readonly model: tfType.LayersModel,
    private readonly optimizer: tfType.Optimizer,
  ) {}

  /**
   * Compiles `model` + `optimizer` into a graph session and loads their current state into it,
   * or says why it cannot (not the native backend, a layer or optimizer the compiler lacks).
   */
  static async create(
    model: tfType.LayersModel,
    optimizer: tfType.Optimizer,
    featureShape: number[],
    numClasses: number,
    task: Task = 'classification',
    options: CompileStepOptions = {},
  ): Promise<GraphTrainStep | { unsupported: string }> {
    const opened = await GraphSession.compileAndOpen(TAG, () =>
      compileSequentialStep(describeLayers(model), featureShape, numClasses, optimizerConfig(optimizer), task, options),
    );
    if ('unsupported' in opened) return opened;
    const { compiled, session } = opened;
    const step = new GraphTrainStep(session, compiled, model, optimizer);
    await step.loadFromModel();
    return step;
  }

  private get adam(): TfjsAdamState | undefined {
    return this.optimizer.getClassName() === 'Adam' ? (this.optimizer as unknown as TfjsAdamState) : undefined;
  }

  /** Writes the tfjs model's weights and the optimizer's slots into the graph's variables. */
  async loadFromModel(): Promise<void> {
    // Every weight by name: the trainable ones, and BatchNormalization's moving averages (states).
    const weights = new Map(this.model.weights.map((w) => [(w.read() as tfType.Variable).name, w.read()]));
    const { variables, states } = this.compiled;
    // Adam's slots by position, as tfjs's own Adam.setWeights takes them: all first moments in
    // variable order, then all second moments. (Names would not do: a model loaded from a
    // checkpoint gets fresh variable names.) None yet means a fresh optimizer: zeros.
    const slots = this.adam
      ? (await this.optimizer.getWeights()).filter((w) => w.name !== 'iter').map((w) => w.tensor)
      : [];
    if (slots.length !== 0 && slots.length !== 2 * variables.length) {
      throw new Error(
        `the optimizer holds ${slots.length} slots; ` +
          `the model's ${variables.length} variables need ${2 * variables.length}`,
      );
    }
    const feeds: [string, tfType.Tensor][] = [];
    const created: tfType.Tensor[] = [];
    const slotOrZeros = (index: number, shape: number[]) => {
      const existing = slots[index];
      if (existing) return existing;
      const zeros = tf.zeros(shape);
      created.push(zeros);
      return zeros;
    };
    variables.forEach((v, i) => {
      const value = weights.get(v.name);
      if (!value) throw new Error(`the model has no trainable weight ${v.name}`);
      feeds.push([v.set, value]);
      if (v.setM) feeds.push([v.setM, slotOrZeros(i, v.shape)]);
      if (v.setV) feeds.push([v.setV, slotOrZeros(variables.length + i, v.shape)]);
    });
    for (const state of states) {
      const value = weights.get(state.name);
      if (!value) throw new Error(`the model has no weight ${state.name}`);
      feeds.push([state.set, value]);
    }
    tf.dispose(this.session.run(feeds, [this.compiled.setDone]));
    tf.dispose(created);
  }

  /**
   * One step on a batch: forward, loss scaled by `lossScale` (1 / global batch size), backward,
   * update. `seed` keys the dropout masks, so a resumed run draws the same ones.
   */
  step(
    xs: tfType.Tensor | tfType.Tensor[],
    ys: tfType.Tensor,
    lossScale: number,
    seed: [number, number],
  ): GraphStepResult {
    this.flush();
    const { outputs } = this.compiled;
    const batch = this.batchFeeds(xs, ys, lossScale, seed);
    const update = this.updateFeeds();
    const results = this.session.run(
      [...batch.feeds, ...update.feeds],
      [outputs.lossSum, outputs.correct, outputs.trainDone],
    );
    const [lossSum, correct] = [results[0]!.dataSync()[0]!, results[1]!.dataSync()[0]!];
    tf.dispose([...results, ...batch.owned, ...update.owned]);
    this.countIteration();
    return { lossSum, correct };
  }

  /** Whether deferGradients' update rides on the next computeGradients' session run (no BatchNormalization). */
  get fusesUpdates(): boolean {
    return this.compiled.fused !== undefined;
  }

  /** Elements of all variables together: the length of the flat vectors below. */
  get size(): number {
    return this.compiled.sizes.reduce((a, b) => a + b, 0);
  }

  /**
   * The gradients of a batch without updating anything, as one vector with two more elements at
   * its end — the batch's loss sum and correct count — so one all-reduce sums all three.
   */
  computeGradients(
    xs: tfType.Tensor | tfType.Tensor[],
    ys: tfType.Tensor,
    lossScale: number,
    seed: [number, number],
  ): Float32Array {
    const { outputs, fused } = this.compiled;
    const pending = fused ? this.pending : undefined;
    if (!pending) this.flush();
    const batch = this.batchFeeds(xs, ys, lossScale, seed);
    let results: tfType.Tensor[];
    if (pending && fused) {
      // The deferred update and this batch's gradients on the updated variables, in one session run.
      this.pending = undefined;
      results = this.session.run(
        [[this.compiled.applyFlat, pending.gradients], ...pending.update.feeds, ...batch.feeds],
        [fused.flatGradients, fused.lossSum, fused.correct, this.compiled.applyFlatDone],
      );
      tf.dispose([pending.gradients, ...pending.update.owned]);
    } else {
      // The moving averages of BatchNormalization move with every batch a replica sees, as in a step.
      const fetches = [this.compiled.flatGradients, outputs.lossSum, outputs.correct];
      if (this.compiled.states.length) fetches.push(outputs.stateDone);
      results = this.session.run(batch.feeds, fetches);
    }
    // One buffer for every step (see ReplicaEngine.computeGradients): less garbage per step.
    const out = (this.gradientBuffer ??= new Float32Array(this.size + 2));
    out.set(results[0]!.dataSync() as Float32Array);
    out[this.size] = results[1]!.dataSync()[0]!;
    out[this.size + 1] = results[2]!.dataSync()[0]!;
    tf.dispose([...results, ...batch.owned]);
    return out;
  }

  /**
   * The update from `flat` (as applyGradients), applied with the next computeGradients in the same session run — or
   * before anything else reads or writes the variables (a step, readVariables, writeVariables, syncToModel), so a
   * checkpoint, an evaluation or the end of an epoch sees it. The learning rate and Adam's step are those of now.
   */
  deferGradients(flat: Float32Array): void {
    this.flush();
    this.pending = {
      gradients: tf.tensor1d(flat.length === this.size ? flat : flat.subarray(0, this.size)),
      update: this.updateFeeds(),
    };
    this.countIteration();
  }

  /** Applies a deferred update now, if there is one. */
  flush(): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    const results = this.session.run(
      [[this.compiled.applyFlat, pending.gradients], ...pending.update.feeds],
      [this.compiled.applyFlatDone],
    );
    tf.dispose([...results, ...pending.update.owned, pending.gradients]);
  }

  /** One optimizer update from a flat gradient vector (the all-reduced sum; extra elements ignored). */
  applyGradients(flat: Float32Array): void {
    this.flush();
    const update = this.updateFeeds();
    const gradients = tf.tensor1d(flat.length === this.size ? flat : flat.subarray(0, this.size));
    const results = this.session.run(
      [[this.compiled.applyFlat, gradients], ...update.feeds],
      [this.compiled.applyFlatDone],
    );
    tf.dispose([...results, ...update.owned, gradients]);
    this.countIteration();
  }

  /** Every variable's value as one vector (variable order). */
  readVariables(): Float32Array {
    this.flush();
    const feed = tf.scalar(0);
    const [flat] = this.session.run([[this.compiled.inputs.lossScale, feed]], [this.compiled.flatVariables]);
    const out = Float32Array.from(flat!.dataSync() as Float32Array);
    tf.dispose([feed, flat!]);
    return out;
  }

  /** Overwrites every variable from one vector (e.g. rank 0's, broadcast). */
  writeVariables(flat: Float32Array): void {
    if (flat.length !== this.size)
      throw new Error(`writeVariables: ${flat.length} values for ${this.size} elements of variables`);
    this.flush();
    const values = tf.tensor1d(flat);
    tf.dispose([...this.session.run([[this.compiled.setFlatVariables, values]], [this.compiled.setFlatDone]), values]);
  }

  /**
   * A batch's feeds: inputs (a model with several takes one tensor each, in its input order), labels (float, where
   * tf.oneHot gives int32), loss scale and dropout seed.
   */
  private batchFeeds(
    xs: tfType.Tensor | tfType.Tensor[],
    ys: tfType.Tensor,
    lossScale: number,
    seed: [number, number],
  ): Feeds {
    const { inputs } = this.compiled;
    const parts = Array.isArray(xs) ? xs : [xs];
    if (parts.length !== inputs.xs.length)
      throw new Error(`the graph step takes ${inputs.xs.length} input tensors; the batch has ${parts.length}`);
    const floats = parts.map((t) => (t.dtype === 'float32' ? t : tf.cast(t, 'float32')));
    const labels = ys.dtype === 'float32' ? ys : tf.cast(ys, 'float32');
    const scale = tf.scalar(lossScale);
    const seedTensor = tf.tensor1d(seed, 'int32');
    return {
      feeds: [
        ...floats.map((t, i): [string, tfType.Tensor] => [inputs.xs[i]!, t]),
        [inputs.y, labels],
        [inputs.lossScale, scale],
        [inputs.seed, seedTensor],
      ],
      owned: [scale, seedTensor, ...(labels === ys ? [] : [labels]), ...floats.filter((t, i) => t !== parts[i])],
    };
  }

  /** An update's feeds: the learning rate and, for Adam, the bias corrections of the coming step. */
  private updateFeeds(): Feeds {
    const { inputs } = this.compiled;
    const adam = this.adam;
    const t = (adam?.iterations ?? this.optimizer.iterations) + 1;
    const owned = [
      tf.scalar((this.optimizer as unknown as { learningRate: number }).learningRate),
      tf.scalar(adam ? 1 - adam.beta1 ** t : 1),
      tf.scalar(adam ? 1 - adam.beta2 ** t : 1),
    ];
    const names = [inputs.learningRate, inputs.oneMinusBeta1Power, inputs.oneMinusBeta2Power];
    return { feeds: names.map((name, i) => [name, owned[i]!]), owned };
  }

  /** tfjs optimizers count their steps in `iterations_`; the graph's steps count too. */
  private countIteration(): void {
    const counter = this.optimizer as unknown as { iterations_: number };
    counter.iterations_ += 1;
  }

  /** Copies the graph's variables and Adam moments back into the tfjs model and optimizer. */
  async syncToModel(): Promise<void> {
    this.flush();
    const { variables, states } = this.compiled;
    const fetches = [
      ...variables.flatMap((v) => [v.read, ...(v.readM ? [v.readM, v.readV!] : [])]),
      ...states.map((state) => state.read),
    ];
    // Any feed will do: the binding wants at least one, and reads depend on none.
    const feed = tf.scalar(0);
    const values = this.session.run([[this.compiled.inputs.lossScale, feed]], fetches);
    feed.dispose();
    let k = 0;
    const byName = new Map(this.model.weights.map((w) => [(w.read() as tfType.Variable).name, w]));
    const moments: { m: { name: string; tensor: tfType.Tensor }[]; v: { name: string; tensor: tfType.Tensor }[] } = {
      m: [],
      v: [],
    };
    for (const v of variables) {
      const value = values[k++]!;
      byName.get(v.name)!.write(value);
      value.dispose();
      if (v.readM) {
        moments.m.push({ name: `${v.name}/m`, tensor: values[k++]! });
        moments.v.push({ name: `${v.name}/v`, tensor: values[k++]! });
      }
    }
    for (const state of states) {
      const value = values[k++]!;
      byName.get(state.name)!.write(value);
      value.dispose();
    }
    if (this.adam) {
      // tfjs's Adam.setWeights makes new slot variables without freeing the old ones.
      const slots = this.optimizer as unknown as {
        accumulatedFirstMoment?: { variable: tfType.Variable }[];
        accumulatedSecondMoment?: { variable: tfType.Variable }[];
      };
      tf.dispose(
        [...(slots.accumulatedFirstMoment ?? []), ...(slots.accumulatedSecondMoment ?? [])].map(
          (slot) => slot.variable,
        ),
      );
      const iterations = tf.scalar(this.adam.iterations, 'int32');
      await this.optimizer.setWeights([{ name: 'iter', tensor: iterations }, ...moments.m, ...moments.v]);
      tf.dispose([iterations, ...moments.m.map((e) => e.tensor), ...moments.v.map((e) => e.tensor)]);
    }
  }

  dispose(): void {
    if (this.pending) tf.dispose([this.pending.gradients, ...this.pending.update.owned]);
    this.pending = undefined;
    this.session.close();
  }
}
