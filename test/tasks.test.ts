import { readFileSync } from 'node:fs';
import type { LayersModel } from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { decideBlessing } from '../activities/blessing';
import { selectBackend, tf } from '../engine/backend';
import { compileInferenceGraph } from '../engine/forward-graph';
import { GraphSession } from '../engine/graph-session';
import { PipelineSpecError, validatePipeline } from '../pipelines/define';
import { EvaluationSpecSchema } from '../pipelines/spec';
import { buildModel } from '../training/architectures';
import type { Examples } from '../training/batches';
import { evaluateModel, type ModelMetrics } from '../training/evaluate';
import { classifierAuc, METRIC_NAMES, regressionMetrics, rocAuc } from '../training/metrics';
import { type Collective, strategyRing } from '../training/distributed/strategies';
import { replicaLoop } from '../training/loop';
import { createOptimizer } from '../training/optimizers';
import { createReplicaEngine } from '../training/replica-engine';
import { type ExecutionReport, trainLoop } from '../training/trainer';

/**
 * Tasks: a regression trains (eager and as one graph) on the real cars data, the metrics agree
 * with independent computations, and the evaluation gates decide per task.
 */
const native = (await selectBackend()).engineBackend === 'tensorflow';

// ---- the cars data: miles per gallon from the other columns, standardised on the training rows ----
interface Cars {
  train: Examples;
  test: Examples;
  featureSize: number;
}

function loadCars(): Cars {
  const rows = JSON.parse(readFileSync('node_modules/vega-datasets/data/cars.json', 'utf8')) as Record<
    string,
    unknown
  >[];
  const numeric = ['Cylinders', 'Displacement', 'Horsepower', 'Weight_in_lbs', 'Acceleration'];
  const origins = ['USA', 'Europe', 'Japan'];
  const usable = rows.filter((r) => typeof r.Miles_per_Gallon === 'number' && numeric.every((c) => r[c] !== null));
  const raw = usable.map((r) => [
    ...numeric.map((c) => Number(r[c])),
    Number(String(r.Year).slice(0, 4)),
    ...origins.map((o) => (r.Origin === o ? 1 : 0)),
  ]);
  const targets = usable.map((r) => Number(r.Miles_per_Gallon));
  // Every fifth row tests: a fixed split, the same on every run.
  const trainRows = raw.map((_, i) => i).filter((i) => i % 5 !== 0);
  const testRows = raw.map((_, i) => i).filter((i) => i % 5 === 0);
  const featureSize = raw[0]!.length;
  const mean = new Array<number>(featureSize).fill(0);
  const std = new Array<number>(featureSize).fill(0);
  for (const i of trainRows) raw[i]!.forEach((v, j) => (mean[j]! += v / trainRows.length));
  for (const i of trainRows) raw[i]!.forEach((v, j) => (std[j]! += (v - mean[j]!) ** 2 / trainRows.length));
  const examples = (indices: number[]): Examples => {
    const images = new Float32Array(indices.length * featureSize);
    const labels = new Float32Array(indices.length);
    indices.forEach((row, k) => {
      raw[row]!.forEach((v, j) => (images[k * featureSize + j] = (v - mean[j]!) / (Math.sqrt(std[j]!) || 1)));
      labels[k] = targets[row]!;
    });
    return { images, labels, count: indices.length };
  };
  return { train: examples(trainRows), test: examples(testRows), featureSize };
}

let cars: Cars;
beforeAll(() => {
  cars = loadCars();
});

async function trainCars(
  execution: 'auto' | 'eager',
  options: Record<string, unknown> | (() => LayersModel),
  epochs: number,
  learningRate = 0.01,
): Promise<{ used: ExecutionReport; metrics: ModelMetrics; weights: number[]; losses: number[] }> {
  const featureShape = [cars.featureSize];
  const model =
    typeof options === 'function'
      ? options()
      : buildModel(tf, 'tabular', { featureShape, task: 'regression', numClasses: 1, seed: 3 }, options);
  let used: ExecutionReport | undefined;
  const history = await trainLoop({
    model,
    optimizer: createOptimizer('adam', learningRate),
    train: cars.train,
    validation: cars.test,
    featureShape,
    numClasses: 1,
    task: 'regression',
    epochs,
    batchSize: 32,
    seed: 5,
    startEpoch: 0,
    startGlobalStep: 0,
    execution,
    onExecution: (e) => {
      used = e;
    },
    onStep: () => {},
    onEpochEnd: async () => {},
  });
  const metrics = await evaluateModel(model, cars.test, featureShape, 1, undefined, 'regression');
  const weights = model.getWeights().flatMap((w) => Array.from(w.dataSync()));
  model.dispose();
  expect(history.at(-1)!.valMetrics?.rmse).toBeCloseTo(metrics.metrics.rmse!, 4);
  return { used: used!, metrics, weights, losses: history.map((h) => h.loss) };
}

const maxAbsDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe('regression on the cars data', () => {
  it('trains eagerly to an RMSE under 5 mpg, with MAE and R² reported', async () => {
    const { used, metrics } = await trainCars('eager', { hiddenUnits: [32, 16], dropout: 0 }, 60);
    expect(used.mode).toBe('eager');
    expect(metrics.task).toBe('regression');
    expect(metrics.metrics.rmse!).toBeLessThan(5);
    expect(metrics.metrics.mae!).toBeLessThan(metrics.metrics.rmse! + 1e-9);
    expect(metrics.metrics.r2!).toBeGreaterThan(0.6);
    expect(metrics.loss).toBeCloseTo(metrics.metrics.rmse! ** 2, 3);
  });

  it.skipIf(!native)('trains as one graph to the RMSE and the weights of the eager path', async () => {
    const options = { hiddenUnits: [32, 16], dropout: 0 };
    const graph = await trainCars('auto', options, 60);
    const eager = await trainCars('eager', options, 60);
    expect(graph.used).toEqual({ mode: 'graph' });
    expect(graph.metrics.metrics.rmse!).toBeLessThan(5);
    expect(graph.metrics.metrics.rmse!).toBeCloseTo(eager.metrics.metrics.rmse!, 2);
    expect(maxAbsDiff(graph.weights, eager.weights)).toBeLessThanOrEqual(1e-2);
  });

  it.skipIf(!native)('BatchNormalization and tanh/sigmoid train as one graph as they do eagerly', async () => {
    for (const activation of ['relu', 'tanh', 'sigmoid']) {
      const options = { hiddenUnits: [16, 8], dropout: 0, batchNorm: true, activation };
      // Four epochs: 40 steps, few enough that float rounding has not yet grown.
      const graph = await trainCars('auto', options, 4);
      const eager = await trainCars('eager', options, 4);
      expect(graph.used, activation).toEqual({ mode: 'graph' });
      graph.losses.forEach((loss, e) => expect(loss, `${activation} epoch ${e + 1}`).toBeCloseTo(eager.losses[e]!, 2));
      // Moving means and variances included: getWeights holds them too.
      expect(maxAbsDiff(graph.weights, eager.weights), activation).toBeLessThanOrEqual(1e-3);
    }
  });

  it.skipIf(!native)('Dense → BatchNormalization → Activation (a model of its own) trains as one graph', async () => {
    const build = () => {
      const init = (seed: number) => tf.initializers.glorotUniform({ seed });
      return tf.sequential({
        layers: [
          // No bias before a batch norm (which subtracts it again): its true gradient is 0, and Adam would turn
          // the rounding noise of either path into steps of the learning rate.
          tf.layers.dense({ units: 16, inputShape: [cars.featureSize], kernelInitializer: init(1), useBias: false }),
          tf.layers.batchNormalization({ momentum: 0.9 }),
          tf.layers.activation({ activation: 'relu' }),
          tf.layers.dense({ units: 8, activation: 'tanh', kernelInitializer: init(2) }),
          tf.layers.dense({ units: 1, kernelInitializer: init(3) }),
        ],
      });
    };
    const graph = await trainCars('auto', build, 4);
    const eager = await trainCars('eager', build, 4);
    expect(graph.used).toEqual({ mode: 'graph' });
    graph.losses.forEach((loss, e) => expect(loss, `epoch ${e + 1}`).toBeCloseTo(eager.losses[e]!, 2));
    expect(maxAbsDiff(graph.weights, eager.weights)).toBeLessThanOrEqual(1e-3);
  });

  it('a data-parallel replica (gradients, then the update) trains a BatchNorm regression as one trainer', async () => {
    const featureShape = [cars.featureSize];
    const options = { hiddenUnits: [16, 8], dropout: 0, batchNorm: true };
    const input = { featureShape, task: 'regression' as const, numClasses: 1, seed: 3 };
    const common = {
      train: cars.train,
      validation: cars.test,
      featureShape,
      numClasses: 1,
      task: 'regression' as const,
      epochs: 2,
      batchSize: 32,
      seed: 5,
      onStep: () => {},
    };
    const single = await trainCars('auto', options, 2);
    // A job of one replica: the all-reduce leaves the gradients as they are.
    const alone: Collective = {
      rank: 0,
      worldSize: 1,
      allReduce: async (data) => data,
      broadcast: async (data) => data,
      reduce: async (data) => data,
    };
    const model = buildModel(tf, 'tabular', input, options);
    const optimizer = createOptimizer('adam', 0.01);
    const { engine, execution } = await createReplicaEngine(model, optimizer, featureShape, 1, 'auto', 'regression');
    try {
      const { history } = await replicaLoop({
        ...common,
        engine,
        ring: strategyRing('multi-worker-mirrored', alone, {}),
        model,
        optimizer,
        start: { epoch: 0, stepInEpoch: 0, globalStep: 0 },
      });
      expect(execution.mode).toBe(native ? 'graph' : 'eager');
      history.forEach((h, e) => expect(h.loss).toBeCloseTo(single.losses[e]!, 3));
    } finally {
      engine.dispose();
    }
    // Moving averages included: they move with each replica's batches too.
    const weights = model.getWeights().flatMap((w) => Array.from(w.dataSync()));
    expect(maxAbsDiff(weights, single.weights)).toBeLessThanOrEqual(1e-4);
    model.dispose();
  });

  it.skipIf(!native)(
    'a functional model trains as one graph, one chain or branching and joined by Concatenate; Add eagerly',
    async () => {
      const init = (seed: number) => tf.initializers.glorotUniform({ seed });
      const chain = () => {
        const input = tf.input({ shape: [cars.featureSize] });
        const hidden = tf.layers.dense({ units: 16, activation: 'relu', kernelInitializer: init(1) }).apply(input);
        const output = tf.layers.dense({ units: 1, kernelInitializer: init(2) }).apply(hidden);
        return tf.model({ inputs: input, outputs: output as ReturnType<typeof tf.input> });
      };
      const graph = await trainCars('auto', chain, 3);
      const eager = await trainCars('eager', chain, 3);
      expect(graph.used).toEqual({ mode: 'graph' });
      expect(maxAbsDiff(graph.weights, eager.weights)).toBeLessThanOrEqual(1e-4);

      // A hidden layer feeds two branches: its gradient is the sum of theirs. The input feeds two layers too (it
      // needs no gradient: nothing before it trains).
      const branching = () => {
        const input = tf.input({ shape: [cars.featureSize] });
        const h = tf.layers.dense({ units: 8, activation: 'relu', kernelInitializer: init(4) }).apply(input);
        const a = tf.layers.dense({ units: 8, activation: 'relu', kernelInitializer: init(1) }).apply(h);
        const b = tf.layers.dense({ units: 8, activation: 'tanh', kernelInitializer: init(2) }).apply(h);
        const c = tf.layers.dense({ units: 4, activation: 'sigmoid', kernelInitializer: init(5) }).apply(input);
        const joined = tf.layers.concatenate().apply([a, b, c] as ReturnType<typeof tf.input>[]);
        const output = tf.layers.dense({ units: 1, kernelInitializer: init(3) }).apply(joined);
        return tf.model({ inputs: input, outputs: output as ReturnType<typeof tf.input> });
      };
      const branched = await trainCars('auto', branching, 3);
      const branchedEager = await trainCars('eager', branching, 3);
      expect(branched.used).toEqual({ mode: 'graph' });
      expect(maxAbsDiff(branched.weights, branchedEager.weights)).toBeLessThanOrEqual(1e-4);

      // A skip connection: a hidden layer feeds the next one and an Add; Add's gradient is not written.
      const residual = () => {
        const input = tf.input({ shape: [cars.featureSize] });
        const a = tf.layers.dense({ units: 8, activation: 'relu', kernelInitializer: init(1) }).apply(input);
        const b = tf.layers.dense({ units: 8, activation: 'relu', kernelInitializer: init(2) }).apply(a);
        const sum = tf.layers.add().apply([a, b] as ReturnType<typeof tf.input>[]);
        const output = tf.layers.dense({ units: 1, kernelInitializer: init(3) }).apply(sum);
        return tf.model({ inputs: input, outputs: output as ReturnType<typeof tf.input> });
      };
      const fallback = await trainCars('auto', residual, 1);
      expect(fallback.used.mode).toBe('eager');
      expect(fallback.used.reason).toMatch(/layer Add with several inputs/);
    },
  );

  it.skipIf(!native)('with BatchNormalization and dropout reaches an RMSE under 5 mpg as one graph', async () => {
    const { used, metrics } = await trainCars('auto', { hiddenUnits: [32, 16], dropout: 0.1, batchNorm: true }, 60);
    expect(used).toEqual({ mode: 'graph' });
    expect(metrics.metrics.rmse!).toBeLessThan(5);
  });

  it.skipIf(!native)('the serving graph of a BatchNormalization model predicts as the model does', async () => {
    const featureShape = [cars.featureSize];
    const model = buildModel(
      tf,
      'tabular',
      { featureShape, task: 'regression', numClasses: 1, seed: 3 },
      { hiddenUnits: [16, 8], batchNorm: true, dropout: 0.2 },
    );
    // Moving averages away from their initial 0 and 1, so that using them is what is checked.
    for (const layer of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
      const [gamma, beta, mean, variance] = layer.getWeights();
      layer.setWeights([
        tf.randomUniform(gamma!.shape, 0.5, 1.5, 'float32', 1),
        tf.randomUniform(beta!.shape, -0.5, 0.5, 'float32', 2),
        tf.randomUniform(mean!.shape, -1, 1, 'float32', 3),
        tf.randomUniform(variance!.shape, 0.5, 2, 'float32', 4),
      ]);
    }
    const compiled = compileInferenceGraph(model, [-1, ...featureShape]);
    const session = await GraphSession.open(compiled.graph, 'gantry-test');
    const xs = tf.tensor2d(cars.test.images.subarray(0, 20 * cars.featureSize), [20, cars.featureSize]);
    const [graphOut] = session.run([[compiled.input, xs]], [compiled.output]);
    const eagerOut = model.predict(xs) as ReturnType<typeof tf.tensor>;
    const [got, want] = [Array.from(graphOut!.dataSync()), Array.from(eagerOut.dataSync())];
    session.close();
    tf.dispose([xs, graphOut!, eagerOut]);
    model.dispose();
    expect(compiled.shape).toEqual([1]);
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-5);
  });

  it('a regression model not ending in a linear Dense(1) trains eagerly and says why', async () => {
    const featureShape = [cars.featureSize];
    const model = tf.sequential({
      layers: [tf.layers.dense({ units: 1, activation: 'relu', inputShape: featureShape })],
    });
    let used: ExecutionReport | undefined;
    await trainLoop({
      model,
      optimizer: createOptimizer('adam', 0.01),
      train: cars.train,
      validation: cars.test,
      featureShape,
      numClasses: 1,
      task: 'regression',
      epochs: 1,
      batchSize: 64,
      seed: 1,
      startEpoch: 0,
      startGlobalStep: 0,
      onExecution: (e) => {
        used = e;
      },
      onStep: () => {},
      onEpochEnd: async () => {},
    });
    model.dispose();
    expect(used!.mode).toBe('eager');
    if (native) expect(used!.reason).toMatch(/regression model whose last layer is not a linear Dense/);
  });
});

describe('metrics', () => {
  it('a gate may name every metric evaluation measures, and no other', () => {
    for (const metric of METRIC_NAMES)
      expect(EvaluationSpecSchema.safeParse({ gates: [{ metric, min: 0 }] }).success, metric).toBe(true);
    const unknown = EvaluationSpecSchema.safeParse({ gates: [{ metric: 'f1', min: 0 }] });
    expect(unknown.success).toBe(false);
    expect(unknown.error!.issues[0]!.path).toEqual(['gates', 0, 'metric']);
  });

  it('RMSE, MAE and R² of a small case by hand', () => {
    // errors 1, −1, 2, 0: squared 1+1+4+0 = 6; targets 1..4 mean 2.5, SS_tot = 2.25+0.25+0.25+2.25 = 5.
    const m = regressionMetrics([2, 1, 5, 4], [1, 2, 3, 4]);
    expect(m.mse).toBeCloseTo(1.5, 12);
    expect(m.rmse).toBeCloseTo(Math.sqrt(1.5), 12);
    expect(m.mae).toBeCloseTo(1, 12);
    expect(m.r2).toBeCloseTo(1 - 6 / 5, 12);
    expect(regressionMetrics([3, 3], [3, 3]).r2).toBe(1);
  });

  it('AUC equals the pairwise definition (ties half), on random scores with ties', () => {
    let state = 7;
    const random = () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
    const n = 300;
    const scores = Array.from({ length: n }, () => Math.round(random() * 20) / 20);
    const positive = scores.map((s) => random() < 0.3 + 0.4 * s);
    let pairs = 0;
    let wins = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (!positive[i] || positive[j]) continue;
        pairs += 1;
        wins += scores[i]! > scores[j]! ? 1 : scores[i] === scores[j] ? 0.5 : 0;
      }
    expect(rocAuc(scores, positive)).toBeCloseTo(wins / pairs, 12);
    expect(rocAuc([0.1, 0.9], [false, true])).toBe(1);
    expect(rocAuc([0.1, 0.9], [true, true])).toBeUndefined();
  });

  it('multi-class AUC is the macro mean of one-vs-rest; binary AUC is class 1 against 0', () => {
    // Three examples, three classes: class 0 ranked first for example 0, and so on, except class 2's scores.
    const probabilities = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4];
    const labels = [0, 1, 2];
    const perClass = [0, 1, 2].map((c) =>
      rocAuc(
        labels.map((_, i) => probabilities[i * 3 + c]!),
        labels.map((l) => l === c),
      ),
    );
    expect(perClass).toEqual([1, 1, 1]);
    expect(classifierAuc(probabilities, labels, 3)).toBe(1);
    expect(classifierAuc([0.8, 0.2, 0.4, 0.6, 0.3, 0.7], [0, 0, 1], 2)).toBe(1);
    expect(classifierAuc([0.8, 0.2, 0.4, 0.6, 0.3, 0.7], [0, 1, 0], 2)).toBe(0.5);
    expect(classifierAuc([0.8, 0.2, 0.4, 0.6, 0.3, 0.7], [1, 0, 0], 2)).toBe(0);
  });

  it('a classifier reports accuracy, log loss and AUC in its metrics', async () => {
    const model = tf.sequential({
      layers: [tf.layers.dense({ units: 2, activation: 'softmax', inputShape: [1], useBias: false })],
    });
    model.setWeights([tf.tensor2d([[-1, 1]])]);
    const examples = { images: new Float32Array([-2, -1, 1, 2]), labels: new Uint8Array([0, 0, 1, 0]), count: 4 };
    const metrics = await evaluateModel(model, examples, [1], 2);
    model.dispose();
    expect(metrics.task).toBe('classification');
    expect(metrics.accuracy).toBe(0.75);
    expect(metrics.metrics.accuracy).toBe(0.75);
    expect(metrics.metrics.logLoss).toBeCloseTo(metrics.loss, 12);
    // Class-1 scores rank the one positive (x = 1) above two negatives and below one: 2/3.
    expect(metrics.metrics.auc).toBeCloseTo(2 / 3, 12);
  });
});

describe('evaluation gates', () => {
  const regression = (rmse: number, r2 = 0.8): ModelMetrics => ({
    task: 'regression',
    count: 80,
    loss: rmse ** 2,
    accuracy: 0,
    perClassAccuracy: [],
    metrics: { rmse, mae: rmse * 0.8, r2 },
  });
  const classifier = (accuracy: number, auc: number): ModelMetrics => ({
    task: 'classification',
    count: 80,
    loss: 0.3,
    accuracy,
    perClassAccuracy: [],
    metrics: { accuracy, auc, logLoss: 0.3 },
  });
  const evaluation = (gates: unknown[] = []) => EvaluationSpecSchema.parse({ gates });

  it('a regression without gates is held only to an RMSE no worse than the champion', () => {
    expect(decideBlessing(regression(3.2), null, evaluation())).toEqual({
      blessed: true,
      reasons: ['pass: no champion yet, so only the absolute gates apply'],
    });
    const worse = decideBlessing(regression(3.4), { version: 2, metrics: regression(3.2) }, evaluation());
    expect(worse.blessed).toBe(false);
    expect(worse.reasons).toEqual([
      "FAIL: rmse 3.4000 against champion v2's 3.2000: worse by 0.2000; the gate allows no worsening",
    ]);
    expect(decideBlessing(regression(3.1), { version: 2, metrics: regression(3.2) }, evaluation()).blessed).toBe(true);
  });

  it('absolute and change gates on any metric of the task, each with its reason', () => {
    const gates = evaluation([
      { metric: 'rmse', max: 4 },
      { metric: 'r2', min: 0.7, maxWorsening: 0.05 },
    ]);
    const decision = decideBlessing(regression(3.5, 0.74), { version: 1, metrics: regression(3, 0.8) }, gates);
    expect(decision).toEqual({
      blessed: false,
      reasons: [
        'pass: test rmse 3.5000 ≤ maximum 4',
        'pass: test r2 0.7400 ≥ minimum 0.7',
        "FAIL: r2 0.7400 against champion v1's 0.8000: worse by 0.0600; the gate allows worse by up to 0.05",
      ],
    });
    // The explicit change gate replaces the default RMSE comparison.
    expect(decision.reasons.some((r) => r.startsWith('FAIL: rmse'))).toBe(false);
    expect(decideBlessing(regression(5), null, gates).reasons[0]).toBe('FAIL: test rmse 5.0000 > maximum 4');
  });

  it('a classifier keeps its accuracy gates and adds metric gates', () => {
    const gates = evaluation([{ metric: 'auc', min: 0.9, maxWorsening: 0.01 }]);
    const decision = decideBlessing(classifier(0.9, 0.95), { version: 3, metrics: classifier(0.88, 0.97) }, gates);
    expect(decision.reasons).toEqual([
      'pass: test accuracy 90.00% ≥ minimum 80.00%',
      'pass: test auc 0.9500 ≥ minimum 0.9',
      'pass: accuracy change against champion v3 (88.00%) is +2.00 points; the gate requires at least +0.00',
      "FAIL: auc 0.9500 against champion v3's 0.9700: worse by 0.0200; the gate allows worse by up to 0.01",
    ]);
    expect(decision.blessed).toBe(false);
  });

  it('a gate on a metric the evaluation did not measure fails, saying so', () => {
    const decision = decideBlessing(regression(3), null, evaluation([{ metric: 'auc', min: 0.5 }]));
    expect(decision.blessed).toBe(false);
    expect(decision.reasons[0]).toMatch(/test auc was not measured for this regression/);
  });

  it('a spec gating on a metric of the other task is refused, the field named', () => {
    const spec = (data: Record<string, unknown>, gates: unknown[]) => ({
      name: 'cars',
      data,
      model: { name: 'cars', architecture: 'tabular' },
      evaluation: { gates },
    });
    const refused = (input: unknown) => {
      try {
        validatePipeline(input);
      } catch (error) {
        expect(error).toBeInstanceOf(PipelineSpecError);
        return (error as PipelineSpecError).issues;
      }
      throw new Error('the spec was accepted');
    };
    expect(refused(spec({ source: 'fashion-mnist' }, [{ metric: 'rmse', max: 3 }]))).toContainEqual({
      path: 'evaluation.gates.0.metric',
      message: '"rmse" is not a metric of a classification; its metrics are accuracy, auc, logLoss',
    });
    expect(refused(spec({ source: 'fashion-mnist', task: 'regression' }, [{ metric: 'auc' }]))).toEqual(
      expect.arrayContaining([
        {
          path: 'evaluation.gates.0.metric',
          message: '"auc" is not a metric of a regression; its metrics are rmse, mae, r2',
        },
        { path: 'evaluation.gates.0', message: 'a gate needs min, max or maxWorsening' },
      ]),
    );
    expect(validatePipeline(spec({ source: 'fashion-mnist' }, [{ metric: 'auc', min: 0.9 }])).evaluation.gates).toEqual(
      [{ metric: 'auc', min: 0.9 }],
    );
  });
});
