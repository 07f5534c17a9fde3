import path from 'node:path';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METADATA_FILE, ModelRepository } from '../artifacts/model-repository';
import { FileArtifactStore } from '../artifacts/store';
import { type DatasetRef, ingestDataset } from '../data/ingest';
import {
  NUMERIC_INPUT,
  PREPROCESSING_FILE,
  RecordEncoder,
  splitEncoded,
  type TabularPreprocessing,
  TabularPreprocessingSchema,
  tabularInputsOf,
} from '../data/preprocessing';
import { type LoadedSplit, loadSplit } from '../data/shards';
import { selectBackend, selectTrainingBackend, tf } from '../engine/backend';
import { deserializeModel, type ModelFiles, serializeModel } from '../engine/model-files';
import { type Architecture, buildModel, registerArchitecture } from '../training/architectures';
import { batchTensors, inputFeedOf } from '../training/batches';
import { evaluateModel, type ModelMetrics } from '../training/evaluate';
import { createOptimizer } from '../training/optimizers';
import { createReplicaEngine } from '../training/replica-engine';
import { type ExecutionReport, trainLoop } from '../training/trainer';
import { PENGUINS_JSON, readJsonRows, type Row } from './data/tabular-helpers';
import { penguinsEmbedded } from './helpers/penguins-embedded';
import { tabularInputs } from '../pipelines/project';
import { createServable } from '../serving/loader';
import type { ModelServer } from '../serving/server';
import type { DenseTensor } from '../serving/tensors';
import { maxDiff, removeDir, request, startServer, tempDir, until, predictionServiceClient } from './serving/helpers';

/**
 * A project's own architecture with several inputs: penguins ingested from vega-datasets' JSON, a functional model
 * (`numeric` → Dense; `Island`, `Sex` → Embedding → Flatten; Concatenate → softmax) defined with
 * defineArchitecture, trained by the training loop (as one graph per step on the native backend), published with its
 * preprocessing.json into a temp model repository and asked raw records over REST and gRPC on a real server (whose
 * servable runs it as one graph too): the same answers as in process.
 */

const embedded = penguinsEmbedded;

let dir: string;
let ref: DatasetRef;
let preprocessing: TabularPreprocessing;
let splits: Record<'train' | 'validation' | 'test', LoadedSplit>;
let penguins: Row[];
let model: LayersModel;
let files: ModelFiles;
let execution: ExecutionReport | undefined;
let metrics: ModelMetrics;
let server: ModelServer;

function architectureInput() {
  return {
    featureShape: ref.featureShape,
    task: ref.task,
    numClasses: ref.numClasses,
    seed: 7,
    preprocessing,
  };
}

/** The in-process model's probabilities for raw records: encoded, split into the named inputs, predicted. */
function predictInProcess(records: Row[]): Float32Array {
  const encoder = new RecordEncoder(preprocessing);
  const encoded = new Float32Array(records.length * encoder.featureSize);
  records.forEach((r, i) => encoder.encode((c) => r[c], encoded, i * encoder.featureSize));
  const layout = tabularInputsOf(preprocessing);
  const parts = splitEncoded(layout, encoded, records.length);
  const widths = new Map(layout.inputs.map((i) => [i.name, i.width]));
  return tf.tidy(() => {
    const xs = model.inputs.map((t) => {
      const name = t.sourceLayer.name;
      return tf.tensor2d(parts.get(name)!, [records.length, widths.get(name)!]);
    });
    return (model.predict(xs) as tf.Tensor).dataSync() as Float32Array;
  });
}

beforeAll(async () => {
  await selectBackend();
  dir = await tempDir('multi-input');
  const store = new FileArtifactStore(path.join(dir, 'store'));
  ref = await ingestDataset(
    {
      source: 'json',
      path: PENGUINS_JSON,
      seed: 3,
      validationFraction: 0.1,
      statisticsKey: 'pipelines/penguins/last-statistics.json',
      label: 'Species',
    },
    store,
  );
  preprocessing = TabularPreprocessingSchema.parse(JSON.parse((await store.get(ref.preprocessingUri!)).toString()));
  splits = {
    train: await loadSplit(store, ref, 'train'),
    validation: await loadSplit(store, ref, 'validation'),
    test: await loadSplit(store, ref, 'test'),
  };
  penguins = readJsonRows(PENGUINS_JSON).filter((r) => r.Species !== null);

  registerArchitecture(embedded.name, embedded as unknown as Architecture);
  const input = architectureInput();
  const build = () => buildModel(tf, embedded.name, input, { hidden: 16 });
  // The backend probe feeds each input of a model with several inputs.
  await selectTrainingBackend(build, ref.featureShape);
  model = build();
  const feed = inputFeedOf(model, preprocessing);
  await trainLoop({
    model,
    optimizer: createOptimizer('adam', 0.01),
    train: splits.train,
    validation: splits.validation,
    featureShape: ref.featureShape,
    numClasses: ref.numClasses,
    task: 'classification',
    feed,
    epochs: 30,
    batchSize: 16,
    seed: 5,
    startEpoch: 0,
    startGlobalStep: 0,
    execution: 'auto',
    onExecution: (e) => {
      execution = e;
    },
    onStep: () => {},
    onEpochEnd: async () => {},
  });
  metrics = await evaluateModel(
    model,
    splits.test,
    ref.featureShape,
    ref.numClasses,
    undefined,
    'classification',
    feed,
  );
  files = await serializeModel(model);

  const base = path.join(dir, 'models');
  await new ModelRepository(base).publish('penguins', 1, {
    ...files,
    [PREPROCESSING_FILE]: JSON.stringify(preprocessing),
    [METADATA_FILE]: JSON.stringify({ model: 'penguins', version: 1, classNames: ref.classNames }),
  });
  // A model whose second input is none of Gantry's named inputs: its version cannot load.
  const inputs = [tf.input({ shape: [4], name: 'numeric' }), tf.input({ shape: [1], name: 'Colour' })];
  const bad = tf.model({
    inputs,
    outputs: tf.layers.dense({ units: 3 }).apply(tf.layers.concatenate().apply(inputs)) as SymbolicTensor,
  });
  await new ModelRepository(base).publish('bad', 1, {
    ...(await serializeModel(bad)),
    [PREPROCESSING_FILE]: JSON.stringify(preprocessing),
  });
  bad.dispose();
  server = await startServer(base, { grpcPort: 0 });
}, 240_000);

afterAll(async () => {
  model?.dispose();
  await server?.close();
  if (dir) await removeDir(dir);
});

describe('named inputs of tabular data', () => {
  it('numeric slots are gathered and each one-hot becomes its index (out of vocabulary: the vocabulary length)', () => {
    const layout = tabularInputsOf(preprocessing);
    const island = preprocessing.columns.find((c) => c.name === 'Island');
    const sex = preprocessing.columns.find((c) => c.name === 'Sex');
    expect(island?.kind).toBe('categorical');
    expect(sex?.kind).toBe('categorical');
    const numericColumns = preprocessing.columns.filter((c) => c.kind !== 'categorical');
    expect(layout.inputs.map((i) => i.name)).toEqual([NUMERIC_INPUT, 'Island', 'Sex']);
    expect(layout.inputs[0]!.width).toBe(numericColumns.length);
    const encoder = new RecordEncoder(preprocessing);
    const records = [
      { Island: 'Biscoe', 'Beak Length (mm)': 48.6, 'Beak Depth (mm)': 16, Sex: 'MALE' },
      { Island: 'Atlantis', 'Beak Length (mm)': 40, Sex: 'FEMALE' },
    ];
    const encoded = new Float32Array(2 * encoder.featureSize);
    records.forEach((r, i) => encoder.encode((c) => (r as Row)[c], encoded, i * encoder.featureSize));
    const parts = splitEncoded(layout, encoded, 2);
    const vocabulary = island!.kind === 'categorical' ? island!.vocabulary : [];
    expect(Array.from(parts.get('Island')!)).toEqual([vocabulary.indexOf('Biscoe'), vocabulary.length]);
    const beak = numericColumns.findIndex((c) => c.name === 'Beak Length (mm)');
    const column = numericColumns[beak]!;
    expect(column.kind === 'numeric' && parts.get(NUMERIC_INPUT)![beak]).toBeCloseTo(
      column.kind === 'numeric' ? (48.6 - column.mean) / column.std : Number.NaN,
      5,
    );
  });

  it('a model input that is none of the named inputs is refused, naming it and the known ones', () => {
    const inputs = [tf.input({ shape: [4], name: 'numeric' }), tf.input({ shape: [1], name: 'Colour' })];
    const bad = tf.model({ inputs, outputs: tf.layers.concatenate().apply(inputs) as SymbolicTensor });
    expect(() => inputFeedOf(bad, preprocessing)).toThrow(/"Colour" is none of the data's named inputs: .*"Island"/);
    bad.dispose();
  });
});

const native = () => tf.getBackend() === 'tensorflow';

describe('training a functional model with several inputs', () => {
  it('runs as one graph per step (on the native backend) to a test accuracy of at least 0.9', () => {
    expect(model.inputs.map((t) => t.sourceLayer.name)).toEqual(['numeric', 'Island', 'Sex']);
    expect(execution).toEqual(native() ? { mode: 'graph' } : { mode: 'eager', reason: expect.any(String) });
    expect(metrics.count).toBe(ref.counts.test);
    expect(metrics.accuracy).toBeGreaterThanOrEqual(0.9);
  });

  it.each(['adam', 'sgd'] as const)(
    'a graph step (%s) gives the loss and weights of an eager step from the same weights on the same batch',
    async (optimizerName) => {
      if (!native()) return;
      const input = architectureInput();
      const eagerModel = buildModel(tf, embedded.name, input, { hidden: 16 });
      const graphModel = buildModel(tf, embedded.name, input, { hidden: 16 });
      // Away from the initial weights (the trained model's), so that every gradient term is exercised.
      eagerModel.setWeights(model.getWeights());
      graphModel.setWeights(model.getWeights());
      const feed = inputFeedOf(eagerModel, preprocessing)!;
      const eager = await createReplicaEngine(
        eagerModel,
        createOptimizer(optimizerName, 0.05),
        ref.featureShape,
        3,
        'eager',
      );
      const graph = await createReplicaEngine(graphModel, createOptimizer(optimizerName, 0.05), ref.featureShape, 3);
      try {
        expect(graph.execution).toEqual({ mode: 'graph' });
        // Real rows, with every island and both sexes (and the out-of-vocabulary slot where a value is missing).
        const indices = Array.from({ length: 48 }, (_, i) => (i * 7) % splits.train.count);
        // Three steps: Adam's moments and bias corrections carry from one step to the next.
        for (let step = 0; step < 3; step++) {
          const batch = batchTensors(splits.train, indices, ref.featureShape, 3, undefined, 'classification', feed);
          const xs = batch.xs as tf.Tensor[];
          const a = eager.engine.step(xs, batch.ys, 1 / indices.length, [5, step]);
          const b = graph.engine.step(xs, batch.ys, 1 / indices.length, [5, step]);
          tf.dispose([...xs, batch.ys]);
          expect(Math.abs(a.lossSum - b.lossSum) / indices.length).toBeLessThan(1e-4);
          expect(b.correct).toBe(a.correct);
          expect(maxDiff(Array.from(graph.engine.readVariables()), eager.engine.readVariables())).toBeLessThan(1e-4);
        }
        // The graph's variables, written back into the tfjs model, are the eager model's weights.
        await graph.engine.syncToModel();
        const weights = (m: LayersModel) => m.getWeights().flatMap((w) => Array.from(w.dataSync()));
        expect(maxDiff(weights(graphModel), weights(eagerModel))).toBeLessThan(1e-4);
      } finally {
        eager.engine.dispose();
        graph.engine.dispose();
        eagerModel.dispose();
        graphModel.dispose();
      }
    },
  );

  it('a model with a layer the graph step lacks (Add: a skip connection) trains eagerly, saying why', async () => {
    const { numeric, categorical, all } = tabularInputs(tf, architectureInput());
    const hidden = tf.layers.dense({ units: numeric!.shape[1]!, activation: 'relu' }).apply(numeric!) as SymbolicTensor;
    const skip = tf.layers.add().apply([numeric!, hidden]) as SymbolicTensor;
    const island = tf.layers
      .flatten()
      .apply(
        tf.layers.embedding({ inputDim: categorical[0]!.vocabularySize, outputDim: 2 }).apply(categorical[0]!.input),
      );
    const joined = tf.layers.concatenate().apply([skip, island as SymbolicTensor]) as SymbolicTensor;
    const output = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(joined) as SymbolicTensor;
    const skipModel = tf.model({ inputs: all, outputs: output });
    const { engine, execution: used } = await createReplicaEngine(
      skipModel,
      createOptimizer('adam', 0.01),
      ref.featureShape,
      3,
    );
    engine.dispose();
    skipModel.dispose();
    expect(used.mode).toBe('eager');
    expect(used.reason).toMatch(native() ? /layer Add with several inputs/ : /backend has no graph sessions/);
  });
});

describe('serving the published model', () => {
  const records = () => penguins.slice(0, 6).concat(penguins.slice(200, 206));

  it('answers raw records over REST (row format) as the model does in process', async () => {
    const batch = records();
    const answer = await request(server.restPort!, 'POST', '/v1/models/penguins:predict', { instances: batch });
    expect(answer.status).toBe(200);
    const wanted = predictInProcess(batch);
    const scores = answer.json.predictions.flatMap((p: { scores: number[] }) => p.scores);
    expect(maxDiff(scores, wanted)).toBeLessThan(1e-5);
    const classes = answer.json.predictions.map((p: { class: string }) => p.class);
    const k = ref.numClasses;
    const wantedClasses = batch.map((_, r) => {
      const row = Array.from(wanted.subarray(r * k, (r + 1) * k));
      return ref.classNames[row.indexOf(Math.max(...row))];
    });
    expect(classes).toEqual(wantedClasses);
    // A well-trained model names most of these penguins' species right.
    expect(classes.filter((c: string, i: number) => c === batch[i]!.Species).length).toBeGreaterThanOrEqual(10);
  });

  it('the columnar format and an out-of-vocabulary island answer too', async () => {
    const batch = [
      { Island: 'Biscoe', 'Beak Length (mm)': 48.6, 'Beak Depth (mm)': 16, 'Flipper Length (mm)': 230, Sex: 'MALE' },
      { Island: 'Atlantis', 'Beak Length (mm)': 39, 'Beak Depth (mm)': 18.5, 'Flipper Length (mm)': 185, Sex: null },
    ];
    const columns = Object.fromEntries(Object.keys(batch[0]!).map((c) => [c, batch.map((r) => (r as Row)[c])]));
    const answer = await request(server.restPort!, 'POST', '/v1/models/penguins:predict', { inputs: columns });
    expect(answer.status).toBe(200);
    expect(maxDiff(answer.json.outputs.scores.flat(), predictInProcess(batch))).toBeLessThan(1e-5);
    expect(answer.json.outputs.class[0]).toBe('Gentoo');
  });

  it('answers raw records over gRPC as over REST, and metadata lists the raw columns', async () => {
    // Complete records: a protobuf double cannot say "missing" (REST's null does).
    const batch = records()
      .filter((r) => preprocessing.columns.every((c) => r[c.name] !== null))
      .slice(0, 4);
    const client = predictionServiceClient(server.grpcPort!);
    const strings = (name: string) => ({
      dtype: 'DT_STRING',
      tensor_shape: { dim: [{ size: String(batch.length) }] },
      string_val: batch.map((r) => Buffer.from(String(r[name] ?? ''))),
    });
    const numbers = (name: string) => ({
      dtype: 'DT_DOUBLE',
      tensor_shape: { dim: [{ size: String(batch.length) }] },
      double_val: batch.map((r) => (r[name] as number | null) ?? Number.NaN),
    });
    const inputs: Record<string, unknown> = {};
    for (const column of preprocessing.columns)
      inputs[column.name] = column.kind === 'categorical' ? strings(column.name) : numbers(column.name);
    try {
      const response: any = await new Promise((resolve, reject) =>
        client.Predict({ model_spec: { name: 'penguins' }, inputs }, (error: Error | null, value: unknown) =>
          error ? reject(error) : resolve(value),
        ),
      );
      const classes = response.outputs.class.string_val.map((b: Buffer) => b.toString('utf8'));
      const rest = await request(server.restPort!, 'POST', '/v1/models/penguins:predict', { instances: batch });
      expect(classes).toEqual(rest.json.predictions.map((p: { class: string }) => p.class));
      expect(maxDiff(response.outputs.scores.float_val, predictInProcess(batch))).toBeLessThan(1e-5);
    } finally {
      client.close();
    }
    const metadata = await request(server.restPort!, 'GET', '/v1/models/penguins/metadata');
    const signature = metadata.json.metadata.signature_def.signature_def.serving_default;
    expect(Object.keys(signature.inputs)).toContain('Island');
    expect(Object.keys(signature.inputs)).toContain('beak_length_mm');
    expect(Object.keys(signature.inputs)).not.toContain(NUMERIC_INPUT);
  });

  it('a version whose inputs are not the named inputs is refused at load, naming the input', async () => {
    const status = () => request(server.restPort!, 'GET', '/v1/models/bad');
    await until(async () => (await status()).json.model_version_status?.[0]?.state === 'END', 30_000, 'bad: END');
    const version = (await status()).json.model_version_status[0];
    expect(version.state).toBe('END');
    expect(version.status.error_message).toMatch(/does not fit the model: the model's input "Colour" is none of/);
  });

  it('the servable runs it as one graph (a placeholder per input); an index out of range is clamped', async () => {
    // A copy: disposing the servable disposes its model.
    const copy = await deserializeModel(files['model.json'], files['weights.bin']);
    const servable = await createServable(copy, { classNames: ref.classNames }, preprocessing);
    try {
      expect(servable.execution).toEqual(native() ? { mode: 'graph' } : { mode: 'eager', reason: expect.any(String) });
      if (!native()) return;
      const batch = records();
      const encoder = new RecordEncoder(preprocessing);
      const encoded = new Float32Array(batch.length * encoder.featureSize);
      batch.forEach((r, i) => encoder.encode((c) => r[c], encoded, i * encoder.featureSize));
      const layout = tabularInputsOf(preprocessing);
      const parts = splitEncoded(layout, encoded, batch.length);
      const widths = new Map(layout.inputs.map((i) => [i.name, i.width]));
      const inputs = (override?: [string, number]): DenseTensor[] =>
        model.inputs.map((t) => {
          const name = t.sourceLayer.name;
          const data = Float32Array.from(parts.get(name)!);
          if (override?.[0] === name) data.fill(override[1]);
          return { dtype: 'float32', shape: [batch.length, widths.get(name)!], data };
        });
      expect(maxDiff(Array.from(servable.run(inputs())[0]!.data), predictInProcess(batch))).toBeLessThan(1e-5);
      // The encoder never gives an index past the out-of-vocabulary slot; were one sent, it reads that slot's row.
      const island = layout.inputs.find((i) => i.name === 'Island')!;
      const outOfRange = servable.run(inputs(['Island', 99]))[0]!.data;
      const unknown = servable.run(inputs(['Island', island.vocabularySize! - 1]))[0]!.data;
      expect(maxDiff(Array.from(outOfRange), unknown)).toBe(0);
    } finally {
      servable.dispose();
    }
  });

  it('a reloaded copy of the published files answers as the trained model', async () => {
    const reloaded = await deserializeModel(files['model.json'], files['weights.bin']);
    try {
      expect(reloaded.inputs.map((t) => t.sourceLayer.name)).toEqual(['numeric', 'Island', 'Sex']);
    } finally {
      reloaded.dispose();
    }
  });
});
