import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { METADATA_FILE, ModelRepository } from '../artifacts/model-repository';
import { startRun } from '../cli/runs';
import { readRegistry } from '../control/registry';
import {
  featureSizeOf,
  PREPROCESSING_FILE,
  RecordEncoder,
  type PreprocessingColumn,
  splitEncoded,
  type TabularPreprocessing,
  TabularPreprocessingSchema,
  tabularInputsOf,
} from '../data/preprocessing';
import { selectBackend, tf } from '../engine/backend';
import { deserializeModel } from '../engine/model-files';
import {
  ASSETS_EXTRA_DIR,
  compileSavedModel,
  SAVED_MODEL_FILE,
  savedModelFiles,
  type SavedModelNames,
} from '../engine/saved-model-writer';
import { signatureMetadataOf } from '../activities/publish';
import { folderFingerprint } from '../serving/loader';
import { signatureOf } from '../serving/signature';
import type { ModelServer } from '../serving/server';
import { type Architecture, type ArchitectureInput, buildModel, registerArchitecture } from '../training/architectures';
import { validatePipeline } from '../pipelines';
import { completedRun, type RunResult } from '../workflows/api';
import { PENGUINS_JSON } from './data/tabular-helpers';
import { fashionMnistSlicer } from './helpers/examples';
import { penguinsEmbedded } from './helpers/penguins-embedded';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { startInProcessWorkers } from './helpers/workers';
import { maxDiff, nestedImage, removeDir, request, startServer, tempDir } from './serving/helpers';

/**
 * Every published version is also a TensorFlow SavedModel. Models written by the writer (Fashion-MNIST MLP, a
 * penguins tabular model with batch normalisation, a penguins model with several inputs — `numeric`, `Island`,
 * `Sex` through embeddings — all trained a little on real data, and the CNN as initialised) and versions the pipeline
 * published (Fashion-MNIST, and penguins with several inputs: ingest → graph training → publish → `gantry serve`
 * answering raw records) are loaded by Python TensorFlow from the tensorflow-cpu wheel the native
 * backend links, in one run: as tf.saved_model.load does and as TF Serving does (a TF1 session over the `serve` tag
 * fed by the SignatureDef's names). Their `serving_default` signature carries the tfjs names, and its answers are
 * tfjs's within 1e-5.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const PYTHON = path.join(ROOT, '.tools/keras-venv/bin/python');
const TOLERANCE = 1e-5;
const FASHION = [28, 28, 1];
const ROWS = 16;
const SPECIES = ['Adelie', 'Chinstrap', 'Gentoo'];

type Penguin = Record<string, string | number | null>;
interface PythonResult {
  method: string;
  inputs: Record<string, { dtype: string; shape: number[] }>;
  outputs: Record<string, { dtype: string; shape: number[] }>;
  values: Record<string, number[]>;
  sessionValues: Record<string, number[]>;
  /** Outputs on raw records the script encoded by the SavedModel's assets.extra/preprocessing.json. */
  recordValues: Record<string, number[]>;
}
interface Case {
  dir: string;
  names: SavedModelNames;
  input: { data: Float32Array; shape: number[] };
  /** tfjs's own prediction on the input. */
  expected: Float32Array;
  /** Raw records whose encoding is the input, for Python to encode by assets.extra/preprocessing.json. */
  records?: Penguin[];
}

let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>> | undefined;
let base: string;
let server: ModelServer | undefined;
const cases: Record<string, Case> = {};
let python: Record<string, PythonResult>;
let published: { dir: string; pixels: Float32Array; served: number[][] };
let uncovered: string;
/** Several inputs: the writer's own case and the pipeline's version, each with tfjs's or the server's answers. */
interface MultiCase {
  dir: string;
  inputs: Record<string, { shape: number[]; data: number[] }>;
  expected: Float32Array;
}
let multi: MultiCase;
let pipelineMulti: MultiCase & { run: RunResult; records: Penguin[]; classes: string[] };

/** Raw penguin records as the named inputs of a model with several inputs, by its preprocessing. */
function namedInputs(preprocessing: TabularPreprocessing, records: Penguin[]) {
  const encoder = new RecordEncoder(preprocessing);
  const encoded = new Float32Array(records.length * encoder.featureSize);
  records.forEach((r, i) => encoder.encode((c) => r[c], encoded, i * encoder.featureSize));
  const layout = tabularInputsOf(preprocessing);
  const parts = splitEncoded(layout, encoded, records.length);
  return Object.fromEntries(
    layout.inputs.map((input) => [
      input.name,
      { shape: [records.length, input.width], data: Array.from(parts.get(input.name)!) },
    ]),
  );
}

function predictInputs(model: tf.LayersModel, inputs: Record<string, { shape: number[]; data: number[] }>) {
  return tf.tidy(() => {
    const xs = model.inputs.map((t) => {
      const input = inputs[t.sourceLayer.name]!;
      return tf.tensor(input.data, input.shape);
    });
    return (model.predict(xs) as tf.Tensor).dataSync() as Float32Array;
  });
}

const ELU_MLP = {
  name: 'test-elu-mlp',
  description: 'an MLP with an elu hidden layer, which the graph compiler does not cover',
  options: z.object({}).strict(),
  build: (tfjs: typeof tf, input: ArchitectureInput) =>
    tfjs.sequential({
      layers: [
        tfjs.layers.rescaling({ scale: 1 / 255, inputShape: input.featureShape }),
        tfjs.layers.flatten(),
        tfjs.layers.dense({ units: 32, activation: 'elu', kernelInitializer: tfjs.initializers.heNormal({ seed: 1 }) }),
        tfjs.layers.dense({
          units: input.numClasses,
          activation: 'softmax',
          kernelInitializer: tfjs.initializers.glorotUniform({ seed: 2 }),
        }),
      ],
    }),
};

async function trained(model: tf.LayersModel, xs: Float32Array, labels: number[], classes: number, epochs: number) {
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  const x = tf.tensor(xs, [labels.length, ...(model.inputs[0]!.shape.slice(1) as number[])]);
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), classes);
  await model.fit(x, y, { epochs, batchSize: 32, shuffle: false, verbose: 0 });
  tf.dispose([x, y]);
  return model;
}

function predict(model: tf.LayersModel, data: Float32Array, shape: number[]): Float32Array {
  return tf.tidy(() => (model.predict(tf.tensor(data, shape)) as tf.Tensor).dataSync() as Float32Array);
}

/** Writes `model`'s SavedModel as version 1 of `name` in the test's repository, with the tfjs files beside it. */
async function writeCase(
  name: string,
  model: tf.LayersModel,
  names: SavedModelNames,
  data: Float32Array,
  extras: { preprocessing: TabularPreprocessing; records: Penguin[] } | undefined = undefined,
) {
  const compiled = compileSavedModel(model, names);
  expect(compiled.status).toEqual({ written: true, tags: ['serve'], signature: 'serving_default' });
  const shape = [data.length / (model.inputs[0]!.shape.slice(1) as number[]).reduce((a, b) => a * b, 1)];
  shape.push(...(model.inputs[0]!.shape.slice(1) as number[]));
  const assets: Record<string, string> = extras ? { [PREPROCESSING_FILE]: JSON.stringify(extras.preprocessing) } : {};
  const dir = await new ModelRepository(base).publish(name, 1, savedModelFiles(compiled.bytes!, assets));
  cases[name] = { dir, names, input: { data, shape }, expected: predict(model, data, shape), records: extras?.records };
  model.dispose();
}

/** What ingest computes for penguins: z-scored measurements, Island and Sex one-hot with an out-of-vocabulary slot. */
function penguinPreprocessing(rows: Penguin[]): TabularPreprocessing {
  const columns: PreprocessingColumn[] = [];
  for (const name of ['Beak Length (mm)', 'Beak Depth (mm)', 'Flipper Length (mm)', 'Body Mass (g)']) {
    const values = rows.map((r) => r[name]).filter((v): v is number => typeof v === 'number');
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    columns.push({ name, kind: 'numeric', missing: 'impute', mean, std, fill: mean });
  }
  for (const name of ['Island', 'Sex']) {
    const vocabulary = [...new Set(rows.map((r) => r[name]).filter((v): v is string => typeof v === 'string'))];
    columns.push({ name, kind: 'categorical', missing: 'impute', vocabulary, fill: vocabulary[0]! });
  }
  const label = { name: 'Species', task: 'classification' as const, classes: SPECIES };
  return { kind: 'tabular', formatVersion: 1, columns, featureSize: featureSizeOf(columns), label };
}

interface PythonJob {
  dir: string;
  inputs: Record<string, { shape: number[]; data: number[] }>;
  records?: Penguin[];
  recordsInput?: string;
}

async function runPython(jobs: PythonJob[]) {
  await promisify(execFile)('bash', [path.join(ROOT, 'bench/keras/setup.sh')]);
  const file = path.join(base, 'jobs.json');
  await writeFile(file, JSON.stringify(jobs));
  const { stdout } = await promisify(execFile)(PYTHON, [path.join(ROOT, 'test/python/saved_model_predict.py'), file], {
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2', CUDA_VISIBLE_DEVICES: '' },
    maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout) as PythonResult[];
}

beforeAll(async () => {
  await selectBackend();
  env = await createTestEnv('saved-model');
  base = await tempDir('saved-model');
  workers = await startInProcessWorkers(env, ['control', 'train']);
  // The pipeline's own publish: a slice of Fashion-MNIST, trained one epoch, published as version 1.
  const spec = sliceSpec();
  const run = completedRun(await (await startRun(workers.client, spec)).result());
  expect(run).toMatchObject({ published: true });
  const entry = (await readRegistry(workers.client, spec.model.name))!.versions[0]!;
  // A model the graph compiler does not cover (an elu activation): published all the same, without a SavedModel.
  registerArchitecture('test-elu-mlp', ELU_MLP as unknown as Architecture);
  // Only the publish matters here: a low bar, so that one epoch of this small model always clears it.
  const elu = sliceSpec({
    model: { name: 'fashion-elu', architecture: 'test-elu-mlp' },
    evaluation: { minAccuracy: 0.2 },
  });
  expect(completedRun(await (await startRun(workers.client, elu)).result())).toMatchObject({ published: true });
  uncovered = (await readRegistry(workers.client, elu.model.name))!.versions[0]!.publishedPath!;
  // A project's architecture with several inputs, through the whole pipeline on vega-datasets' penguins.
  registerArchitecture(penguinsEmbedded.name, penguinsEmbedded as unknown as Architecture);
  const multiSpec = validatePipeline({
    name: 'penguins-multi',
    description: 'penguin species from a model with several inputs',
    data: { source: 'json', path: PENGUINS_JSON, label: 'Species', missing: 'impute', validationFraction: 0.15 },
    model: { name: 'penguins-multi', architecture: penguinsEmbedded.name, options: { hidden: 16 } },
    train: { epochs: 20, batchSize: 16, learningRate: 0.01 },
    evaluation: { minAccuracy: 0.8 },
  });
  const multiRun = completedRun(await (await startRun(workers.client, multiSpec)).result());
  expect(multiRun).toMatchObject({ published: true });
  const multiDir = (await readRegistry(workers.client, multiSpec.model.name))!.versions[0]!.publishedPath!;

  const take = await fashionMnistSlicer();
  const train = take('train', 0, 512);
  const test = take('test', 0, ROWS);
  const pixels = Float32Array.from(test.images);
  const labels = Array.from(train.labels);
  const images = Float32Array.from(train.images);
  const fashion = { featureShape: FASHION, numClasses: 10, seed: 7 };
  const names = { inputs: ['input'], outputs: ['probabilities'] };
  await writeCase('mlp', await trained(buildModel(tf, 'mlp', fashion, {}), images, labels, 10, 1), names, pixels);
  const cnn = buildModel(tf, 'cnn', fashion, { filters: [8, 16], denseUnits: 32 });
  // Its initial weights: the wasm backend (the fallback) has no gradient for convolutions, and the check is equality.
  await writeCase('cnn', cnn, names, pixels);

  const all = JSON.parse(
    await readFile(path.join(ROOT, 'node_modules/vega-datasets/data/penguins.json'), 'utf8'),
  ) as Penguin[];
  const penguins = all.filter((r) => typeof r['Beak Length (mm)'] === 'number');
  const preprocessing = penguinPreprocessing(penguins);
  const encoder = new RecordEncoder(preprocessing);
  const encoded = new Float32Array(penguins.length * encoder.featureSize);
  penguins.forEach((r, i) => encoder.encode((c) => r[c], encoded, i * encoder.featureSize));
  const species = penguins.map((r) => SPECIES.indexOf(r.Species as string));
  const tabular = buildModel(
    tf,
    'tabular',
    { featureShape: [encoder.featureSize], numClasses: 3, seed: 3 },
    { batchNorm: true, hiddenUnits: [16, 8] },
  );
  // Some epochs, so that batch normalisation's moving averages are the data's, not their initial 0 and 1.
  await trained(tabular, encoded, species, 3, 5);
  const rows = encoded.slice(0, ROWS * encoder.featureSize);
  await writeCase('penguins', tabular, names, rows, { preprocessing, records: penguins.slice(0, ROWS) });

  // Several inputs: `numeric`, then each categorical column's index through an embedding.
  registerArchitecture(penguinsEmbedded.name, penguinsEmbedded as unknown as Architecture);
  const embedded = buildModel(
    tf,
    penguinsEmbedded.name,
    { featureShape: [encoder.featureSize], task: 'classification', numClasses: 3, seed: 3, preprocessing },
    { hidden: 16 },
  );
  const every = namedInputs(preprocessing, penguins);
  const xs = embedded.inputs.map((t) => tf.tensor(every[t.sourceLayer.name]!.data, every[t.sourceLayer.name]!.shape));
  const ys = tf.oneHot(tf.tensor1d(species, 'int32'), 3);
  embedded.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  await embedded.fit(xs, ys, { epochs: 5, batchSize: 32, shuffle: false, verbose: 0 });
  tf.dispose([...xs, ys]);
  const multiNames = { inputs: embedded.inputs.map((t) => t.sourceLayer.name), outputs: ['probabilities'] };
  const compiled = compileSavedModel(embedded, multiNames);
  expect(compiled.status).toEqual({ written: true, tags: ['serve'], signature: 'serving_default' });
  const some = namedInputs(preprocessing, penguins.slice(0, ROWS));
  multi = {
    dir: await new ModelRepository(base).publish('penguins-embedded', 1, savedModelFiles(compiled.bytes!)),
    inputs: some,
    expected: predictInputs(embedded, some),
  };
  embedded.dispose();

  // What `gantry serve` answers for the published version on the same images.
  server = await startServer(env.home.modelRepositoryDir);
  const response = await request(server.restPort!, 'POST', '/v1/models/fashion-mnist:predict', {
    instances: Array.from({ length: ROWS }, (_, i) => nestedImage(pixels, i)),
  });
  expect(response.status).toBe(200);
  published = { dir: entry.publishedPath!, pixels, served: response.json.predictions as number[][] };
  // `gantry serve` on raw records (as the file holds them, Species left out) of the version with several inputs.
  const records = penguins.slice(0, 6).concat(penguins.slice(150, 156), penguins.slice(300, 306));
  const raw = records.map(({ Species, ...record }) => record);
  const multiResponse = await request(server.restPort!, 'POST', '/v1/models/penguins-multi:predict', {
    instances: raw,
  });
  expect(multiResponse.status).toBe(200);
  const predictions = multiResponse.json.predictions as { scores: number[]; class: string }[];
  const multiPreprocessing = TabularPreprocessingSchema.parse(
    JSON.parse(await readFile(path.join(multiDir, PREPROCESSING_FILE), 'utf8')),
  );
  pipelineMulti = {
    dir: multiDir,
    inputs: namedInputs(multiPreprocessing, raw),
    expected: Float32Array.from(predictions.flatMap((p) => p.scores)),
    run: multiRun,
    records,
    classes: predictions.map((p) => p.class),
  };

  const jobs: PythonJob[] = Object.values(cases).map((c) => ({
    dir: c.dir,
    inputs: { [c.names.inputs[0]!]: { shape: c.input.shape, data: Array.from(c.input.data) } },
    ...(c.records ? { records: c.records, recordsInput: c.names.inputs[0]! } : {}),
  }));
  jobs.push({ dir: published.dir, inputs: { input: { shape: [ROWS, ...FASHION], data: Array.from(pixels) } } });
  jobs.push({ dir: multi.dir, inputs: multi.inputs }, { dir: pipelineMulti.dir, inputs: pipelineMulti.inputs });
  const results = await runPython(jobs);
  const order = [...Object.keys(cases), 'published', 'multi', 'pipelineMulti'];
  python = Object.fromEntries(order.map((name, i) => [name, results[i]!]));
}, 600_000);

afterAll(async () => {
  await server?.close();
  await workers?.stop();
  if (base) await removeDir(base);
});

describe('SavedModels written from layers models', () => {
  for (const name of ['mlp', 'cnn', 'penguins']) {
    it(`${name}: Python TensorFlow loads it, signature serving_default has the tfjs names, answers within 1e-5`, () => {
      const c = cases[name]!;
      const result = python[name]!;
      expect(result.method).toBe('tensorflow/serving/predict');
      expect(result.inputs).toEqual({ input: { dtype: 'float32', shape: [-1, ...c.input.shape.slice(1)] } });
      const classes = name === 'penguins' ? 3 : 10;
      expect(result.outputs).toEqual({ probabilities: { dtype: 'float32', shape: [-1, classes] } });
      expect(result.values.probabilities).toHaveLength(ROWS * classes);
      expect(maxDiff(Float32Array.from(result.values.probabilities!), c.expected)).toBeLessThanOrEqual(TOLERANCE);
      expect(maxDiff(Float32Array.from(result.sessionValues.probabilities!), c.expected)).toBeLessThanOrEqual(
        TOLERANCE,
      );
    });
  }

  it('penguins: raw records encoded in Python by assets.extra/preprocessing.json get the same answers', () => {
    const values = python.penguins!.recordValues.probabilities!;
    expect(values).toHaveLength(ROWS * 3);
    expect(maxDiff(Float32Array.from(values), cases.penguins!.expected)).toBeLessThanOrEqual(TOLERANCE);
  });

  it('several inputs: one signature input per model input under its name, float32 [-1, k]; within 1e-5', () => {
    const result = python.multi!;
    expect(result.method).toBe('tensorflow/serving/predict');
    expect(result.inputs).toEqual({
      numeric: { dtype: 'float32', shape: [-1, 4] },
      Island: { dtype: 'float32', shape: [-1, 1] },
      Sex: { dtype: 'float32', shape: [-1, 1] },
    });
    expect(result.outputs).toEqual({ probabilities: { dtype: 'float32', shape: [-1, 3] } });
    expect(result.values.probabilities).toHaveLength(ROWS * 3);
    expect(maxDiff(Float32Array.from(result.values.probabilities!), multi.expected)).toBeLessThanOrEqual(TOLERANCE);
    expect(maxDiff(Float32Array.from(result.sessionValues.probabilities!), multi.expected)).toBeLessThanOrEqual(
      TOLERANCE,
    );
  });

  it('a model the graph compiler does not cover gets no SavedModel, and the reason', () => {
    const a = tf.input({ shape: [4], name: 'numeric' });
    const b = tf.input({ shape: [2], name: 'other' });
    const joined = tf.layers.concatenate().apply([a, b]) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(joined) as tf.SymbolicTensor;
    const twoOutputs = tf.model({ inputs: [a, b], outputs: [out, joined] });
    const result = compileSavedModel(twoOutputs, { inputs: ['numeric', 'other'], outputs: ['probabilities', 'x'] });
    expect(result.bytes).toBeUndefined();
    expect(result.status).toEqual({ written: false, reason: expect.stringMatching(/2 outputs/) });
    twoOutputs.dispose();

    const recurrent = tf.sequential({ layers: [tf.layers.simpleRNN({ units: 4, inputShape: [3, 2] })] });
    const unsupported = compileSavedModel(recurrent, { inputs: ['input'], outputs: ['value'] });
    expect(unsupported.status).toEqual({ written: false, reason: expect.stringMatching(/SimpleRNN/) });
    recurrent.dispose();
  });
});

describe('the pipeline publishes a SavedModel beside the tfjs files', () => {
  it('the version folder holds saved_model.pb and assets.extra/, and gantry.json says it was written', async () => {
    const dir = published.dir;
    const metadata = JSON.parse(await readFile(path.join(dir, METADATA_FILE), 'utf8'));
    expect(metadata.savedModel).toEqual({ written: true, tags: ['serve'], signature: 'serving_default' });
    expect((await readFile(path.join(dir, SAVED_MODEL_FILE))).length).toBeGreaterThan(100_000);
    // The SavedModel carries its preprocessing and Gantry's metadata where TF Serving keeps extra files.
    for (const file of [PREPROCESSING_FILE, METADATA_FILE])
      expect(await readFile(path.join(dir, ASSETS_EXTRA_DIR, file), 'utf8')).toBe(
        await readFile(path.join(dir, file), 'utf8'),
      );
    // The loader's fingerprint looks at the version's own files, not into the SavedModel's folders.
    expect(await folderFingerprint(dir)).not.toMatch(/assets\.extra/);
  });

  it('a model the graph compiler does not cover is published without one, and gantry.json says why', async () => {
    const metadata = JSON.parse(await readFile(path.join(uncovered, METADATA_FILE), 'utf8'));
    expect(metadata.savedModel).toEqual({ written: false, reason: expect.stringMatching(/activation elu/) });
    const files = await readdir(uncovered);
    expect(files).toContain('model.json');
    expect(files).not.toContain(SAVED_MODEL_FILE);
    expect(files).not.toContain(ASSETS_EXTRA_DIR);
  });

  it('Python TensorFlow loads the published version and predicts what `gantry serve` predicts', async () => {
    const result = python.published!;
    expect(result.inputs).toEqual({ input: { dtype: 'float32', shape: [-1, ...FASHION] } });
    expect(result.outputs).toEqual({ probabilities: { dtype: 'float32', shape: [-1, 10] } });
    const served = Float32Array.from(published.served.flat());
    expect(served).toHaveLength(ROWS * 10);
    expect(maxDiff(Float32Array.from(result.values.probabilities!), served)).toBeLessThanOrEqual(TOLERANCE);
    // And tfjs's own files in the folder predict the same.
    const model = await deserializeModel(
      await readFile(path.join(published.dir, 'model.json'), 'utf8'),
      await readFile(path.join(published.dir, 'weights.bin')),
    );
    const own = predict(model, published.pixels, [ROWS, ...FASHION]);
    model.dispose();
    expect(maxDiff(own, served)).toBeLessThanOrEqual(TOLERANCE);
  });
});

describe('a pipeline whose architecture has several inputs (penguins: numeric, Island, Sex)', () => {
  it('trains as one graph per step on the native backend and publishes a SavedModel', async () => {
    const { run } = pipelineMulti;
    expect(run.train.execution).toEqual(
      tf.getBackend() === 'tensorflow' ? { mode: 'graph' } : { mode: 'eager', reason: expect.any(String) },
    );
    expect(run.version).toBe(1);
    const metadata = JSON.parse(await readFile(path.join(pipelineMulti.dir, METADATA_FILE), 'utf8'));
    expect(metadata.savedModel).toEqual({ written: true, tags: ['serve'], signature: 'serving_default' });
    expect((await readFile(path.join(pipelineMulti.dir, SAVED_MODEL_FILE))).length).toBeGreaterThan(1000);
    expect(await readFile(path.join(pipelineMulti.dir, ASSETS_EXTRA_DIR, PREPROCESSING_FILE), 'utf8')).toBe(
      await readFile(path.join(pipelineMulti.dir, PREPROCESSING_FILE), 'utf8'),
    );
  });

  it("gantry.json's signature lists the model's inputs in order, with shapes and what each holds", async () => {
    const metadata = JSON.parse(await readFile(path.join(pipelineMulti.dir, METADATA_FILE), 'utf8'));
    expect(Object.keys(metadata.signature.inputs)).toEqual(['numeric', 'Island', 'Sex']);
    expect(metadata.signature.inputs.numeric).toEqual({
      dtype: 'float32',
      shape: [-1, 4],
      note: expect.stringMatching(/^the numeric vector: the 4 numeric and boolean columns/),
    });
    for (const column of ['Island', 'Sex'])
      expect(metadata.signature.inputs[column]).toEqual({
        dtype: 'float32',
        shape: [-1, 1],
        note: expect.stringContaining(`the category index of column "${column}"`),
      });
    expect(metadata.signature.outputs).toEqual({ probabilities: { dtype: 'float32' } });
  });

  it('`gantry serve` answers raw records with a species; Python on the encoded inputs agrees within 1e-5', () => {
    const { classes, records, expected } = pipelineMulti;
    expect(classes).toHaveLength(records.length);
    for (const c of classes) expect(SPECIES).toContain(c);
    expect(classes.filter((c, i) => c === records[i]!.Species).length).toBeGreaterThanOrEqual(records.length - 2);
    const result = python.pipelineMulti!;
    expect(Object.keys(result.inputs).sort()).toEqual(['Island', 'Sex', 'numeric']);
    expect(result.values.probabilities).toHaveLength(records.length * 3);
    expect(maxDiff(Float32Array.from(result.values.probabilities!), expected)).toBeLessThanOrEqual(TOLERANCE);
    expect(maxDiff(Float32Array.from(result.sessionValues.probabilities!), expected)).toBeLessThanOrEqual(TOLERANCE);
  });
});

describe("gantry.json's signature of a model with several inputs", () => {
  it('inputs whose names JSON would reorder (integer-like) are listed in order under inputsInOrder', () => {
    const inputs = [
      { name: 'numeric', shape: [-1, 2] },
      { name: '2020', shape: [-1, 1] },
    ];
    const signature = signatureMetadataOf(inputs, undefined, false);
    expect(signature).not.toHaveProperty('inputs');
    expect(signature).toMatchObject({ inputsInOrder: [{ name: 'numeric' }, { name: '2020', shape: [-1, 1] }] });
    // Without `inputs`, the server keys the model's inputs by their layer names: the same names, in order.
    const a = tf.input({ shape: [2], name: 'numeric' });
    const b = tf.input({ shape: [1], name: '2020' });
    const out = tf.layers.dense({ units: 1 }).apply(tf.layers.concatenate().apply([a, b])) as tf.SymbolicTensor;
    const model = tf.model({ inputs: [a, b], outputs: out });
    expect(signatureOf(model, { signature }).inputs.map((i) => i.key)).toEqual(['numeric', '2020']);
    model.dispose();
    // One input: the encoded record, as before.
    expect(signatureMetadataOf([{ name: 'x', shape: [-1, 9] }], undefined, true)).toEqual({
      inputs: { input: { dtype: 'float32', note: 'raw pixel values 0..255' } },
      outputs: { value: { dtype: 'float32' } },
    });
  });
});

describe("the model repository with a SavedModel's subfolders", () => {
  it('writes files in subfolders, confirms a retry of the same files, refuses paths leaving the folder', async () => {
    const repository = new ModelRepository(base);
    const files = { 'model.json': '{}', 'assets.extra/preprocessing.json': '{"a":1}', 'gantry.json': '{"t":1}' };
    const dir = await repository.publish('nested', 1, files);
    expect(await readFile(path.join(dir, 'assets.extra/preprocessing.json'), 'utf8')).toBe('{"a":1}');
    // A retry whose gantry.json differs (timestamps) is the same version; a different nested file is not.
    expect(await repository.publish('nested', 1, { ...files, 'gantry.json': '{"t":2}' })).toBe(dir);
    await expect(
      repository.publish('nested', 1, { ...files, 'assets.extra/preprocessing.json': '{}' }),
    ).rejects.toThrow(/preprocessing\.json differs/);
    for (const name of ['assets.extra/../../escape', '/etc/passwd', 'a//b', '.hidden'])
      await expect(repository.publish('nested', 2, { [name]: 'x' })).rejects.toThrow(/not a relative path/);
    expect(await repository.versions('nested')).toEqual([1]);
  });
});
