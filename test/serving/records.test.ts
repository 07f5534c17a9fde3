import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocessingOf } from '../../activities/publish';
import { METADATA_FILE, ModelRepository } from '../../artifacts/model-repository';
import {
  featureSizeOf,
  PREPROCESSING_FILE,
  RecordEncoder,
  type PreprocessingColumn,
  type TabularPreprocessing,
} from '../../data/preprocessing';
import { selectBackend, tf } from '../../engine/backend';
import { deserializeModel, serializeModel, type ModelFiles } from '../../engine/model-files';
import { ServingClient } from '../../serving/client';
import { recordInputsOf, recordsFromInstances, tensorNameOf, tensorNamesOf } from '../../serving/records';
import type { ModelServer } from '../../serving/server';
import { maxDiff, removeDir, request, startServer, tempDir, until, predictionServiceClient } from './helpers';

/**
 * Raw records in, classes out: a small penguins classifier trained here on vega-datasets' data,
 * encoded by a preprocessing computed from that data, published with its preprocessing.json
 * into a temp model repository and served over REST and gRPC on free ports.
 */

type Penguin = Record<string, string | number | null>;

const NUMERIC = ['Beak Length (mm)', 'Beak Depth (mm)', 'Flipper Length (mm)', 'Body Mass (g)'];
const SPECIES = ['Adelie', 'Chinstrap', 'Gentoo'];

let penguins: Penguin[];
let preprocessing: TabularPreprocessing;
let files: ModelFiles;
let base: string;
let server: ModelServer;
let client: ServingClient;
let prediction: grpc.Client & Record<string, any>;

function mostFrequent(values: string[]): string[] {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([v]) => v);
}

/** What ingest computes on the training split: mean/std, vocabularies, fills. Beak length must be given. */
function computePreprocessing(rows: Penguin[]): TabularPreprocessing {
  const columns: PreprocessingColumn[] = [];
  const categorical = (name: string, missing: 'impute' | 'fail'): PreprocessingColumn => {
    const vocabulary = mostFrequent(rows.map((r) => r[name]).filter((v): v is string => typeof v === 'string'));
    return { name, kind: 'categorical', missing, vocabulary, fill: vocabulary[0]! };
  };
  columns.push(categorical('Island', 'impute'));
  for (const name of NUMERIC) {
    const values = rows.map((r) => r[name]).filter((v): v is number => typeof v === 'number');
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    columns.push({
      name,
      kind: 'numeric',
      missing: name === 'Beak Length (mm)' ? 'fail' : 'impute',
      mean,
      std,
      fill: mean,
    });
  }
  columns.push(categorical('Sex', 'impute'));
  return {
    kind: 'tabular',
    formatVersion: 1,
    columns,
    featureSize: featureSizeOf(columns),
    label: { name: 'Species', task: 'classification', classes: SPECIES },
  };
}

function encodeAll(records: Penguin[]): Float32Array {
  const encoder = new RecordEncoder(preprocessing);
  const out = new Float32Array(records.length * encoder.featureSize);
  records.forEach((r, i) => encoder.encode((c) => r[c], out, i * encoder.featureSize));
  return out;
}

async function predictInProcess(vectors: Float32Array, rows: number): Promise<Float32Array> {
  const model = await deserializeModel(files['model.json'], files['weights.bin']);
  try {
    return tf.tidy(() =>
      (model.predict(tf.tensor(vectors, [rows, preprocessing.featureSize])) as tf.Tensor).dataSync(),
    ) as Float32Array;
  } finally {
    model.dispose();
  }
}

async function train(rows: Penguin[]): Promise<ModelFiles> {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({
        units: 8,
        activation: 'relu',
        inputShape: [preprocessing.featureSize],
        kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }),
      }),
      tf.layers.dense({
        units: 3,
        activation: 'softmax',
        kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }),
      }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(0.05), loss: 'categoricalCrossentropy' });
  const xs = tf.tensor(encodeAll(rows), [rows.length, preprocessing.featureSize]);
  const ys = tf.oneHot(
    tf.tensor1d(
      rows.map((r) => SPECIES.indexOf(r.Species as string)),
      'int32',
    ),
    3,
  );
  await model.fit(xs, ys, { epochs: 40, batchSize: 32, shuffle: false, verbose: 0 });
  tf.dispose([xs, ys]);
  try {
    return await serializeModel(model);
  } finally {
    model.dispose();
  }
}

function grpcCall(method: string, body: object): Promise<any> {
  return new Promise((resolve, reject) =>
    prediction[method]!(body, (error: grpc.ServiceError | null, response: unknown) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

function predict(body: unknown, model = 'penguins') {
  return request(server.restPort!, 'POST', `/v1/models/${model}:predict`, body);
}

beforeAll(async () => {
  await selectBackend();
  const all = JSON.parse(
    await readFile(path.resolve(import.meta.dirname, '../../node_modules/vega-datasets/data/penguins.json'), 'utf8'),
  ) as Penguin[];
  // Records without a beak length cannot be encoded (its policy is `fail`); the rest keep their missing sexes.
  penguins = all.filter((r) => typeof r['Beak Length (mm)'] === 'number');
  preprocessing = computePreprocessing(penguins);
  files = await train(penguins);
  base = await tempDir('records');
  const metadata = { model: 'penguins', version: 1, classNames: SPECIES };
  await new ModelRepository(base).publish('penguins', 1, {
    ...files,
    [PREPROCESSING_FILE]: JSON.stringify(preprocessing),
    [METADATA_FILE]: JSON.stringify(metadata),
  });
  server = await startServer(base, { grpcPort: 0 });
  client = new ServingClient({ url: `http://127.0.0.1:${server.restPort}` });
  prediction = predictionServiceClient(server.grpcPort!);
}, 120_000);

afterAll(async () => {
  prediction?.close();
  await server?.close();
  if (base) await removeDir(base);
});

describe('tensor names of columns', () => {
  it('keeps valid names and respells the others by the documented rule', () => {
    expect(tensorNameOf('Island')).toBe('Island');
    expect(tensorNameOf('Beak Length (mm)')).toBe('beak_length_mm');
    expect(tensorNameOf('Body Mass (g)')).toBe('body_mass_g');
    expect(tensorNameOf('  miles/gallon ')).toBe('miles/gallon');
    expect(tensorNamesOf(['a b', 'a_b', '(x)', '!!'])).toEqual(['a_b_0', 'a_b', 'x', 'column_3']);
  });
});

describe('encoding records against a signature', () => {
  it('a missing value under `drop` is refused naming the column; a boolean column reads its spellings', () => {
    const columns: PreprocessingColumn[] = [
      { name: 'Weight', kind: 'numeric', missing: 'drop', mean: 0, std: 1, fill: 0 },
      { name: 'Indoor?', kind: 'boolean', missing: 'impute', fill: 0 },
    ];
    const prep: TabularPreprocessing = {
      kind: 'tabular',
      formatVersion: 1,
      columns,
      featureSize: 2,
      label: { name: 'y', task: 'regression' },
    };
    const spec = (key: string, shape: number[]) => ({ key, tensorName: key, dtype: 'float32' as const, shape });
    const signature = {
      name: 'serving_default',
      methodName: 'tensorflow/serving/predict',
      inputs: [spec('input', [-1, 2])],
      outputs: [spec('value', [-1, 1])],
    };
    const records = recordInputsOf(prep, signature);
    expect(records.columns.map((c) => c.tensorName)).toEqual(['Weight', 'indoor']);
    const encoded = recordsFromInstances(
      [
        { Weight: 2, indoor: 'yes' },
        { Weight: '3', 'Indoor?': false },
      ],
      records,
      10,
    );
    expect(Array.from(encoded.inputs[0]!.data)).toEqual([2, 1, 3, 0]);
    expect(() => recordsFromInstances([{ Weight: 1 }, { 'Indoor?': true }], records, 10)).toThrow(
      /instances\[1\]: column "Weight" is missing and its missing-value policy is "drop"/,
    );
    expect(() => recordsFromInstances([{ Weight: 1, indoor: true, 'Indoor?': true }], records, 10)).toThrow(
      /"Indoor\?" given twice/,
    );
    expect(() => recordsFromInstances(new Array(11).fill({ Weight: 1 }), records, 10)).toThrow(/11 records exceed/);
    expect(() => recordInputsOf(prep, { ...signature, inputs: [spec('input', [-1, 3])] })).toThrow(
      /a record encodes to 2 float32 values/,
    );
  });
});

describe('raw records over REST', () => {
  it('row format: raw penguins get the scores of the model on their encoded vectors, and the class', async () => {
    const records = penguins.filter((_, i) => i % 17 === 0);
    const answer = await predict({ instances: records });
    expect(answer.status).toBe(200);
    const wanted = await predictInProcess(encodeAll(records), records.length);
    const scores = answer.json.predictions.flatMap((p: { scores: number[] }) => p.scores);
    expect(maxDiff(scores, wanted)).toBeLessThan(1e-5);
    const classes = answer.json.predictions.map((p: { class: string }) => p.class);
    classes.forEach((c: string, i: number) => {
      const row = Array.from(wanted.subarray(i * 3, i * 3 + 3));
      expect(c).toBe(SPECIES[row.indexOf(Math.max(...row))]);
    });
    // A trained model: the species it names are mostly the true ones.
    const correct = classes.filter((c: string, i: number) => c === records[i]!.Species).length;
    expect(correct / records.length).toBeGreaterThan(0.9);
  });

  it('columnar format answers the same as the row format', async () => {
    const records = penguins.slice(0, 5);
    const columns = Object.fromEntries(
      Object.keys(records[0]!)
        .filter((k) => k !== 'Species')
        .map((k) => [k, records.map((r) => r[k])]),
    );
    const row = await predict({ instances: records.map(({ Species: _, ...rest }) => rest) });
    const columnar = await predict({ inputs: columns });
    expect(columnar.status).toBe(200);
    expect(columnar.json.outputs.class).toEqual(row.json.predictions.map((p: { class: string }) => p.class));
    expect(columnar.json.outputs.scores).toEqual(row.json.predictions.map((p: { scores: number[] }) => p.scores));
  });

  it('accepts the tensor spelling of a column and values as strings, and pre-encoded vectors still work', async () => {
    const penguin = penguins[3]!;
    const respelled = Object.fromEntries(Object.entries(penguin).map(([k, v]) => [tensorNameOf(k), v]));
    const asText = Object.fromEntries(Object.entries(penguin).map(([k, v]) => [k, v === null ? null : String(v)]));
    const a = await predict({ instances: [penguin] });
    const b = await predict({ instances: [respelled] });
    const c = await predict({ instances: [asText] });
    expect(b.json.predictions).toEqual(a.json.predictions);
    expect(c.json.predictions).toEqual(a.json.predictions);
    const encoded = await predict({ instances: [Array.from(encodeAll([penguin]))] });
    expect(encoded.status).toBe(200);
    expect(maxDiff(encoded.json.predictions[0], a.json.predictions[0].scores)).toBeLessThan(1e-6);
  });

  it('an unknown category answers through the out-of-vocabulary slot and is counted per column', async () => {
    const penguin = { ...penguins[0]!, Island: 'Atlantis' };
    const answer = await predict({ instances: [penguin, penguin] });
    expect(answer.status).toBe(200);
    expect(SPECIES).toContain(answer.json.predictions[0].class);
    const text = await client.metricsText();
    expect(text).toMatch(/gantry_serving_out_of_vocabulary_total\{model="penguins",column="Island"\} 2/);
  });

  it('refuses a missing value under `fail`, a wrong type and an unknown column, naming them', async () => {
    const ok = penguins[0]!;
    const missing = await predict({ instances: [ok, { ...ok, 'Beak Length (mm)': null }] });
    expect(missing.status).toBe(400);
    expect(missing.json.error).toContain('instances[1]');
    expect(missing.json.error).toContain('"Beak Length (mm)" is missing');
    const leftOut = await predict({ instances: [{ Island: 'Biscoe' }] });
    expect(leftOut.status).toBe(400);
    expect(leftOut.json.error).toContain('Beak Length (mm)');
    const badType = await predict({ instances: [{ ...ok, 'Body Mass (g)': 'heavy' }] });
    expect(badType.status).toBe(400);
    expect(badType.json.error).toMatch(/instances\[0\].*"Body Mass \(g\)".*expected a number/);
    const unknown = await predict({ instances: [{ ...ok, Wingspan: 3 }] });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toContain('unknown column "Wingspan"');
    const ragged = await predict({ inputs: { Island: ['Biscoe', 'Dream'], 'Beak Length (mm)': [40] } });
    expect(ragged.status).toBe(400);
    // A number whose normalized value overflows float32 (1e39 / its std does not; JSON reads up to 1.8e308).
    const huge = await predict({ instances: [ok, { ...ok, 'Body Mass (g)': 1e300 }] });
    expect({ status: huge.status, error: huge.json.error }).toEqual({
      status: 400,
      error: expect.stringMatching(
        /^instances\[1\]: column "Body Mass \(g\)" encodes to Infinity, outside the float32/,
      ),
    });
    // A missing value under `impute` (Sex) answers.
    const imputed = await predict({ instances: [{ ...ok, Sex: null }] });
    expect(imputed.status).toBe(200);
  });

  it('metadata lists the raw inputs and the outputs', async () => {
    const answer = await request(server.restPort!, 'GET', '/v1/models/penguins/metadata');
    const signature = answer.json.metadata.signature_def.signature_def.serving_default;
    expect(Object.keys(signature.inputs)).toEqual([
      'Island',
      'beak_length_mm',
      'beak_depth_mm',
      'flipper_length_mm',
      'body_mass_g',
      'Sex',
    ]);
    expect(signature.inputs.Island.dtype).toBe('DT_STRING');
    expect(signature.inputs.beak_length_mm).toMatchObject({ dtype: 'DT_FLOAT', name: 'Beak Length (mm)' });
    expect(Object.keys(signature.outputs)).toEqual(['scores', 'class']);
  });

  it('ServingClient.predictRecords answers per record', async () => {
    const answer = await client.predictRecords('penguins', [
      { Island: 'Biscoe', 'Beak Length (mm)': 48.6, 'Beak Depth (mm)': 16, 'Flipper Length (mm)': 230, Sex: 'MALE' },
    ]);
    expect(answer.version).toBe(1);
    expect(answer.predictions[0]).toMatchObject({ class: 'Gentoo' });
  });
});

describe('raw records over gRPC', () => {
  it('one named tensor per column (tensor names or own names) answers as REST does', async () => {
    const records = penguins.slice(10, 14);
    const strings = (name: string) => ({
      dtype: 'DT_STRING',
      tensor_shape: { dim: [{ size: String(records.length) }] },
      string_val: records.map((r) => Buffer.from(String(r[name] ?? ''))),
    });
    const numbers = (name: string, dtype: 'DT_FLOAT' | 'DT_DOUBLE') => ({
      dtype,
      tensor_shape: { dim: [{ size: String(records.length) }, { size: '1' }] },
      [dtype === 'DT_FLOAT' ? 'float_val' : 'double_val']: records.map((r) => (r[name] as number | null) ?? NaN),
    });
    const response = await grpcCall('Predict', {
      model_spec: { name: 'penguins' },
      inputs: {
        Island: strings('Island'),
        beak_length_mm: numbers('Beak Length (mm)', 'DT_DOUBLE'),
        beak_depth_mm: numbers('Beak Depth (mm)', 'DT_FLOAT'),
        'Flipper Length (mm)': numbers('Flipper Length (mm)', 'DT_FLOAT'),
        body_mass_g: numbers('Body Mass (g)', 'DT_DOUBLE'),
        Sex: strings('Sex'),
      },
    });
    const rest = await predict({ instances: records });
    const classes = response.outputs.class.string_val.map((b: Buffer) => b.toString('utf8'));
    expect(classes).toEqual(rest.json.predictions.map((p: { class: string }) => p.class));
    expect(response.outputs.scores.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(['4', '3']);
    expect(
      maxDiff(
        response.outputs.scores.float_val,
        rest.json.predictions.flatMap((p: any) => p.scores),
      ),
    ).toBeLessThan(1e-6);
  });

  it('GetModelMetadata lists the tensor names, their dtypes and the outputs', async () => {
    const { loadServingProtos } = await import('../../serving/grpc/protos');
    const response = await grpcCall('GetModelMetadata', {
      model_spec: { name: 'penguins' },
      metadata_field: ['signature_def'],
    });
    const map = loadServingProtos().decodeSignatureDefMap(response.metadata.signature_def.value) as any;
    const signature = map.signature_def.serving_default;
    expect(Object.keys(signature.inputs)).toContain('beak_length_mm');
    expect(signature.inputs.Sex.dtype).toBe('DT_STRING');
    expect(signature.inputs.body_mass_g).toMatchObject({ dtype: 'DT_FLOAT', name: 'Body Mass (g)' });
    expect(signature.outputs.class.dtype).toBe('DT_STRING');
  });

  it('an unknown tensor is refused with the column names listed', async () => {
    const error = await grpcCall('Predict', {
      model_spec: { name: 'penguins' },
      inputs: { wingspan: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '1' }] }, float_val: [1] } },
    }).catch((e: grpc.ServiceError) => e);
    expect((error as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((error as grpc.ServiceError).details).toContain('unknown column "wingspan"');
    expect((error as grpc.ServiceError).details).toContain('"beak_length_mm"');
  });

  it('a DT_DOUBLE column value that normalizes past float32 is refused naming the column', async () => {
    const ok = penguins[0]!;
    const column = (name: string) =>
      typeof ok[name] === 'string'
        ? { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: '1' }] }, string_val: [Buffer.from(String(ok[name]))] }
        : { dtype: 'DT_DOUBLE', tensor_shape: { dim: [{ size: '1' }] }, double_val: [ok[name] as number] };
    const inputs = Object.fromEntries(['Island', ...NUMERIC, 'Sex'].map((name) => [name, column(name)]));
    inputs['Flipper Length (mm)']!.double_val = [-1e300];
    const error = await grpcCall('Predict', { model_spec: { name: 'penguins' }, inputs }).catch(
      (e: grpc.ServiceError) => e,
    );
    expect({ code: (error as grpc.ServiceError).code, details: (error as grpc.ServiceError).details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/column "Flipper Length \(mm\)" encodes to -Infinity, outside the float32/),
    });
  });
});

describe('preprocessing.json at load and at publish', () => {
  it('a version whose preprocessing.json is bad or does not fit the model is in error; nothing crashes', async () => {
    const repository = new ModelRepository(base);
    await repository.publish('broken-json', 1, { ...files, [PREPROCESSING_FILE]: '{"kind": "tabular"' });
    const wrongSize = { ...preprocessing, columns: preprocessing.columns.slice(1) };
    wrongSize.featureSize = featureSizeOf(wrongSize.columns);
    await repository.publish('broken-fit', 1, { ...files, [PREPROCESSING_FILE]: JSON.stringify(wrongSize) });
    await server.poll();
    const errorOf = async (model: string) => (await client.modelStatus(model).catch(() => []))[0]?.error ?? null;
    await until(async () => (await errorOf('broken-json')) !== null && (await errorOf('broken-fit')) !== null, 20_000);
    expect(await errorOf('broken-json')).toContain('preprocessing.json is not JSON');
    expect(await errorOf('broken-fit')).toMatch(
      /preprocessing.json does not fit the model: a record encodes to 8 float32 values, .* \[-1, 12\]/,
    );
    // The good model still answers.
    expect((await predict({ instances: [penguins[0]] })).status).toBe(200);
  });

  it('publish takes the dataset preprocessing (checked) or builds an image one', async () => {
    const dir = await tempDir('publish-prep');
    try {
      const file = path.join(dir, 'p.json');
      await writeFile(file, JSON.stringify(preprocessing));
      const read = (uri: string) => readFile(uri);
      const tabular = await preprocessingOf(
        {
          task: 'classification',
          featureShape: [preprocessing.featureSize],
          classNames: SPECIES,
          preprocessingUri: file,
        },
        read,
      );
      expect(tabular?.json).toEqual(preprocessing);
      await writeFile(file, '{"kind": "tabular"}');
      await expect(
        preprocessingOf({ task: 'classification', featureShape: [3], classNames: [], preprocessingUri: file }, read),
      ).rejects.toThrow(/p\.json: .*columns/);
      const image = await preprocessingOf(
        { task: 'classification', featureShape: [28, 28, 1], classNames: ['a', 'b'], preprocessingUri: null },
        read,
      );
      expect(image?.json).toMatchObject({ kind: 'image', height: 28, width: 28, channels: 1 });
    } finally {
      await removeDir(dir);
    }
  });
});

describe('a regression over raw records (cars)', () => {
  type Car = Record<string, string | number | null>;
  let cars: Car[];
  let carPrep: TabularPreprocessing;
  let carFiles: ModelFiles;

  const encodeCars = (records: Car[]) => {
    const encoder = new RecordEncoder(carPrep);
    const out = new Float32Array(records.length * encoder.featureSize);
    records.forEach((r, i) => encoder.encode((c) => r[c], out, i * encoder.featureSize));
    return out;
  };

  beforeAll(async () => {
    cars = (
      JSON.parse(
        await readFile(path.resolve(import.meta.dirname, '../../node_modules/vega-datasets/data/cars.json'), 'utf8'),
      ) as Car[]
    ).filter((c) => typeof c.Miles_per_Gallon === 'number');
    const numeric = (name: string): PreprocessingColumn => {
      const values = cars.map((c) => c[name]).filter((v): v is number => typeof v === 'number');
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
      return { name, kind: 'numeric', missing: 'impute', mean, std, fill: mean };
    };
    const columns: PreprocessingColumn[] = [
      numeric('Horsepower'),
      numeric('Weight_in_lbs'),
      { name: 'Origin', kind: 'categorical', missing: 'impute', vocabulary: ['USA', 'Japan', 'Europe'], fill: 'USA' },
    ];
    carPrep = {
      kind: 'tabular',
      formatVersion: 1,
      columns,
      featureSize: featureSizeOf(columns),
      label: { name: 'Miles_per_Gallon', task: 'regression' },
    };
    const model = tf.sequential({
      layers: [
        tf.layers.dense({
          units: 1,
          inputShape: [carPrep.featureSize],
          kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }),
        }),
      ],
    });
    model.compile({ optimizer: tf.train.adam(0.5), loss: 'meanSquaredError' });
    const xs = tf.tensor(encodeCars(cars), [cars.length, carPrep.featureSize]);
    const ys = tf.tensor(
      cars.map((c) => c.Miles_per_Gallon as number),
      [cars.length, 1],
    );
    await model.fit(xs, ys, { epochs: 60, batchSize: 64, verbose: 0 });
    tf.dispose([xs, ys]);
    carFiles = await serializeModel(model);
    model.dispose();
    await new ModelRepository(base).publish('cars', 1, { ...carFiles, [PREPROCESSING_FILE]: JSON.stringify(carPrep) });
    await server.poll();
    await until(async () => (await client.modelStatus('cars').catch(() => []))[0]?.state === 'AVAILABLE', 20_000);
  }, 60_000);

  it('answers the value, as the model does on the encoded vectors; feedback values give the online error', async () => {
    const fields = ['Horsepower', 'Weight_in_lbs', 'Origin', 'Miles_per_Gallon'];
    const records = cars.slice(0, 20).map((c): Car => Object.fromEntries(fields.map((f) => [f, c[f] ?? null])));
    const answer = await client.predictRecords('cars', records, { requestId: 'cars-1' });
    const model = await deserializeModel(carFiles['model.json'], carFiles['weights.bin']);
    const wanted = tf.tidy(() =>
      (model.predict(tf.tensor(encodeCars(records), [records.length, carPrep.featureSize])) as tf.Tensor).dataSync(),
    );
    model.dispose();
    const values = answer.predictions.map((p) => (p as { value: number }).value);
    expect(maxDiff(values, wanted)).toBeLessThan(1e-4);
    const truth = records.map((c) => c.Miles_per_Gallon as number);
    const rmse = Math.sqrt(values.reduce((a, v, i) => a + (v - truth[i]!) ** 2, 0) / values.length);
    expect(rmse).toBeLessThan(6);

    // Labels (a classifier's feedback) are refused for a regression; values are taken.
    // Feedback refers to the server's id of the answer (a client's own x-request-id is only echoed).
    expect(answer.requestId).not.toBe('cars-1');
    const wrong = await client.feedback('cars', [{ requestId: answer.requestId, labels: truth.map(() => 0) }]);
    expect(wrong.rejected[0]!.reason).toContain('send "values"');
    const result = await client.feedback('cars', [{ requestId: answer.requestId, values: truth }]);
    expect(result).toMatchObject({ accepted: 1, rows: 20 });
    const text = await client.metricsText();
    const gauge = text.match(/gantry_serving_online_error\{model="cars",version="1",measure="rmse"\} ([\d.e-]+)/);
    expect(Number(gauge?.[1])).toBeCloseTo(rmse, 3);
    const { servingSnapshot } = await import('../../serving/metrics-snapshot');
    const { windowStats } = await import('../../serving/metrics-window');
    const stats = windowStats(servingSnapshot(await client.metrics(), 'cars'))['1']!;
    expect(stats.feedback.values).toBe(20);
    expect(stats.feedback.rmse).toBeCloseTo(rmse, 3);

    const columnar = await predict({ inputs: { Horsepower: [130, null], Weight_in_lbs: [3504, 2000] } }, 'cars');
    expect(columnar.status).toBe(200);
    expect(columnar.json.outputs.value).toHaveLength(2);
    const metadata = await request(server.restPort!, 'GET', '/v1/models/cars/metadata');
    expect(Object.keys(metadata.json.metadata.signature_def.signature_def.serving_default.outputs)).toEqual(['value']);
  });
});
