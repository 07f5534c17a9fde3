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
  type TabularPreprocessing,
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
import { folderFingerprint } from '../serving/loader';
import type { ModelServer } from '../serving/server';
import { type Architecture, type ArchitectureInput, buildModel, registerArchitecture } from '../training/architectures';
import { completedRun } from '../workflows/api';
import { fashionMnistSlicer } from './helpers/examples';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { startInProcessWorkers } from './helpers/workers';
import { maxDiff, nestedImage, removeDir, request, startServer, tempDir } from './serving/helpers';

/**
 * Every published version is also a TensorFlow SavedModel. Models written by the writer (Fashion-MNIST MLP, a
 * penguins tabular model with batch normalisation, both trained a little on real data, and the CNN as initialised)
 * and a version the pipeline published are loaded by Python TensorFlow from the tensorflow-cpu wheel the native
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

  // What `gantry serve` answers for the published version on the same images.
  server = await startServer(env.home.modelRepositoryDir);
  const response = await request(server.restPort!, 'POST', '/v1/models/fashion-mnist:predict', {
    instances: Array.from({ length: ROWS }, (_, i) => nestedImage(pixels, i)),
  });
  expect(response.status).toBe(200);
  published = { dir: entry.publishedPath!, pixels, served: response.json.predictions as number[][] };

  const jobs: PythonJob[] = Object.values(cases).map((c) => ({
    dir: c.dir,
    inputs: { [c.names.inputs[0]!]: { shape: c.input.shape, data: Array.from(c.input.data) } },
    ...(c.records ? { records: c.records, recordsInput: c.names.inputs[0]! } : {}),
  }));
  jobs.push({ dir: published.dir, inputs: { input: { shape: [ROWS, ...FASHION], data: Array.from(pixels) } } });
  const results = await runPython(jobs);
  python = Object.fromEntries([...Object.keys(cases), 'published'].map((name, i) => [name, results[i]!]));
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

  it('a model the graph compiler does not cover gets no SavedModel, and the reason', () => {
    const a = tf.input({ shape: [4], name: 'numeric' });
    const b = tf.input({ shape: [2], name: 'other' });
    const joined = tf.layers.concatenate().apply([a, b]) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(joined) as tf.SymbolicTensor;
    const twoInputs = tf.model({ inputs: [a, b], outputs: out });
    const result = compileSavedModel(twoInputs, { inputs: ['numeric', 'other'], outputs: ['probabilities'] });
    expect(result.bytes).toBeUndefined();
    expect(result.status).toEqual({ written: false, reason: expect.stringMatching(/2 inputs/) });
    twoInputs.dispose();

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
