import { execFileSync } from 'node:child_process';
import { cp, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../engine/backend';
import { loadServingProtos } from '../../serving/grpc/protos';
import type { ModelServer } from '../../serving/server';
import { maxDiff, removeDir, request, startServer, tempDir, until, predictionServiceClient } from './helpers';

/**
 * SavedModels written by Python TensorFlow (test/fixtures/saved-models/make_saved_models.py) served
 * by the model server beside nothing else: TF Serving's half_plus_two (two signatures), a Keras
 * model.export(), a model of two named inputs and outputs (with TF Serving's warm-up file), one with
 * an int64 input, float64, string and bool inputs, and a float16 one (a dtype the binding cannot feed). Each answer is
 * compared with the Python model's own over REST (row, columnar) and gRPC Predict; the metadata with
 * the SignatureDefs; broken files put only their own version in error; hot swap and labels work.
 */

const ROOT = path.resolve(import.meta.dirname, '../..');
const TOKEN = 'saved-model-admin-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };

type Answers = Record<string, Record<string, { inputs: Record<string, unknown>; outputs: Record<string, unknown> }>>;
type Unary = (
  request: object,
  metadata: grpc.Metadata,
  callback: (e: grpc.ServiceError | null, r: any) => void,
) => void;

const MODELS = [
  'half_plus_two',
  'keras_mlp',
  'two_io',
  'int64_in',
  'float64_in',
  'string_in',
  'bool_in',
  'float16_in',
  'examples_in',
];

let fixtures: string;
let base: string;
let answers: Answers;
let server: ModelServer;
let port: number;
let prediction: Record<string, Unary> & grpc.Client;

function grpcCall(method: string, body: object): Promise<any> {
  return new Promise((resolve, reject) =>
    prediction[method]!.call(prediction, body, new grpc.Metadata(), (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

const flat = (value: unknown): number[] => (Array.isArray(value) ? value.flatMap(flat) : [value as number]);
const shapeOf = (value: unknown): number[] => (Array.isArray(value) ? [value.length, ...shapeOf(value[0])] : []);

function expectClose(actual: unknown, wanted: unknown): void {
  expect(shapeOf(actual)).toEqual(shapeOf(wanted));
  expect(maxDiff(flat(actual), flat(wanted))).toBeLessThanOrEqual(1e-5);
}

/** The Python inputs as TensorProtos (float, or int64 as decimal strings). */
function tensorProtos(inputs: Record<string, unknown>, int64 = false): Record<string, object> {
  return Object.fromEntries(
    Object.entries(inputs).map(([key, value]) => {
      const tensor_shape = { dim: shapeOf(value).map((size) => ({ size: String(size) })) };
      return [
        key,
        int64
          ? { dtype: 'DT_INT64', tensor_shape, int64_val: flat(value).map(String) }
          : { dtype: 'DT_FLOAT', tensor_shape, float_val: flat(value) },
      ];
    }),
  );
}

/** A gRPC TensorProto's values in its shape (as nested arrays, like the Python answers). */
function nested(tensor: any): unknown {
  const dims = tensor.tensor_shape.dim.map((d: { size: string }) => Number(d.size));
  const values: number[] = tensor.float_val.length
    ? tensor.float_val
    : tensor.double_val.length
      ? tensor.double_val
      : tensor.string_val.length
        ? tensor.string_val.map((b: Buffer) => b.toString())
        : tensor.int64_val.length
          ? tensor.int64_val.map(Number)
          : tensor.bool_val.length
            ? tensor.bool_val.map(Number)
            : tensor.int_val;
  const build = (level: number, offset: number): unknown => {
    if (level === dims.length) return values[offset];
    const stride = dims.slice(level + 1).reduce((a: number, b: number) => a * b, 1);
    return Array.from({ length: dims[level] }, (_, i) => build(level + 1, offset + i * stride));
  };
  return build(0, 0);
}

async function status(model: string): Promise<any> {
  return (await request(port, 'GET', `/v1/models/${model}`)).json;
}

// SavedModels run on the native backend only; without it (CI's fallback pass) saved-model-backend.test.ts checks
// that such a version is reported in error, and this file has nothing to serve.
const native = (await selectBackend()).engineBackend === 'tensorflow';

beforeAll(async () => {
  if (!native) return;
  fixtures = await tempDir('saved-model-fixtures');
  // The venv of Python TensorFlow (the same wheel as the native backend); a no-op once it is there.
  execFileSync('bash', [path.join(ROOT, 'bench/keras/setup.sh')], { stdio: 'inherit' });
  execFileSync(
    path.join(ROOT, '.tools/keras-venv/bin/python'),
    [path.join(ROOT, 'test/fixtures/saved-models/make_saved_models.py'), fixtures],
    { stdio: 'inherit' },
  );
  answers = JSON.parse(await readFile(path.join(fixtures, 'answers.json'), 'utf8')) as Answers;
  base = await tempDir('saved-model');
  for (const model of MODELS) await cp(path.join(fixtures, model), path.join(base, model), { recursive: true });
  // Hostile files: a truncated saved_model.pb, random bytes, a warm-up file of garbage.
  await cp(path.join(fixtures, 'half_plus_two'), path.join(base, 'truncated'), { recursive: true });
  await truncate(path.join(base, 'truncated/1/saved_model.pb'), 100);
  await cp(path.join(fixtures, 'half_plus_two'), path.join(base, 'random'), { recursive: true });
  const random = Buffer.alloc(4096);
  for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
  await writeFile(path.join(base, 'random/1/saved_model.pb'), random);
  await cp(path.join(fixtures, 'two_io'), path.join(base, 'bad_warmup'), { recursive: true });
  await writeFile(path.join(base, 'bad_warmup/1/assets.extra/tf_serving_warmup_requests'), random.subarray(0, 64));
  server = await startServer(base, { grpcPort: 0, adminToken: TOKEN });
  port = server.restPort!;
  prediction = predictionServiceClient(server.grpcPort!);
  for (const model of MODELS)
    await until(async () => (await status(model))?.model_version_status?.[0]?.state === 'AVAILABLE', 60_000, model);
}, 180_000);

afterAll(async () => {
  prediction?.close();
  await server?.close();
  if (base) await removeDir(base);
  if (fixtures) await removeDir(fixtures);
});

describe.skipIf(!native)('SavedModels from Python TensorFlow', () => {
  it('serves half_plus_two as TF Serving documents it, both signatures, REST row, columnar and gRPC', async () => {
    const want = answers.half_plus_two!;
    const row = await request(port, 'POST', '/v1/models/half_plus_two:predict', { instances: [1.0, 2.0, 5.0] });
    expect(row.status).toBe(200);
    expect(row.json.predictions).toEqual([2.5, 3.0, 4.5]);
    expectClose(row.json.predictions, want.serving_default!.outputs.y);
    const columnar = await request(port, 'POST', '/v1/models/half_plus_two/versions/1:predict', {
      signature_name: 'half_plus_three',
      inputs: { x: [1.0, 2.0, 5.0] },
    });
    expect(columnar.status).toBe(200);
    expectClose(columnar.json.outputs, want.half_plus_three!.outputs.y);
    const unknown = await request(port, 'POST', '/v1/models/half_plus_two:predict', {
      signature_name: 'nope',
      instances: [1],
    });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatch(
      /signature_name "nope" not found; this model serves "serving_default", "half_plus_three"/,
    );
    for (const signature of ['serving_default', 'half_plus_three']) {
      const response = await grpcCall('Predict', {
        model_spec: { name: 'half_plus_two', signature_name: signature },
        inputs: tensorProtos(want[signature]!.inputs),
      });
      expect(response.model_spec.signature_name).toBe(signature);
      expectClose(nested(response.outputs.y), want[signature]!.outputs.y);
    }
  });

  it('reports the real SignatureDefs over REST /metadata and gRPC GetModelMetadata', async () => {
    const metadata = (await request(port, 'GET', '/v1/models/half_plus_two/metadata')).json;
    const defs = metadata.metadata.signature_def.signature_def;
    expect(Object.keys(defs).sort()).toEqual(['half_plus_three', 'serving_default']);
    // TF Serving's JSON for half_plus_two: name, dtype, shape with -1 for the batch.
    expect(defs.serving_default).toEqual({
      inputs: {
        x: {
          dtype: 'DT_FLOAT',
          tensor_shape: { dim: [{ size: '-1', name: '' }], unknown_rank: false },
          name: 'serving_default_x:0',
        },
      },
      outputs: {
        y: {
          dtype: 'DT_FLOAT',
          tensor_shape: { dim: [{ size: '-1', name: '' }], unknown_rank: false },
          name: expect.stringMatching(/:0$/),
        },
      },
      method_name: 'tensorflow/serving/predict',
    });
    const response = await grpcCall('GetModelMetadata', {
      model_spec: { name: 'int64_in' },
      metadata_field: ['signature_def'],
    });
    const map = loadServingProtos().decodeSignatureDefMap(response.metadata.signature_def.value) as any;
    const ids = map.signature_def.serving_default.inputs.ids;
    expect(ids.dtype).toBe('DT_INT64');
    expect(ids.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(['-1', '2']);
    const two = (await request(port, 'GET', '/v1/models/two_io/metadata')).json.metadata.signature_def.signature_def;
    expect(Object.keys(two.serving_default.inputs).sort()).toEqual(['a', 'b']);
    expect(Object.keys(two.serving_default.outputs).sort()).toEqual(['scaled', 'total']);
    const doubles = (await request(port, 'GET', '/v1/models/float64_in/metadata')).json.metadata.signature_def;
    expect(doubles.signature_def.serving_default.inputs.x.dtype).toBe('DT_DOUBLE');
  });

  it('serves a Keras model.export() (and :classify on its softmax output)', async () => {
    const want = answers.keras_mlp!.serving_default!;
    const [key, rows] = Object.entries(want.inputs)[0]!;
    const outputKey = Object.keys(want.outputs)[0]!;
    const row = await request(port, 'POST', '/v1/models/keras_mlp:predict', { instances: rows });
    expectClose(row.json.predictions, want.outputs[outputKey]);
    const columnar = await request(port, 'POST', '/v1/models/keras_mlp:predict', { inputs: { [key]: rows } });
    expectClose(columnar.json.outputs, want.outputs[outputKey]);
    const response = await grpcCall('Predict', {
      model_spec: { name: 'keras_mlp' },
      inputs: tensorProtos(want.inputs),
    });
    expectClose(nested(response.outputs[outputKey]), want.outputs[outputKey]);
    const classify = await request(port, 'POST', '/v1/models/keras_mlp:classify', {
      examples: (rows as number[][]).map((r) => ({ [key]: r })),
    });
    expect(classify.status).toBe(200);
    expectClose(
      classify.json.results.map((r: [string, number][]) => r.map(([, score]) => score)),
      want.outputs[outputKey],
    );
  });

  it('serves two named inputs and two named outputs, after replaying TF Serving’s warm-up file', async () => {
    const want = answers.two_io!.serving_default!;
    const { a, b } = want.inputs as { a: number[][]; b: number[][] };
    const row = await request(port, 'POST', '/v1/models/two_io:predict', {
      instances: a.map((_, i) => ({ a: a[i], b: b[i] })),
    });
    expect(row.status).toBe(200);
    expectClose(
      row.json.predictions.map((p: any) => p.total),
      want.outputs.total,
    );
    expectClose(
      row.json.predictions.map((p: any) => p.scaled),
      want.outputs.scaled,
    );
    const columnar = await request(port, 'POST', '/v1/models/two_io:predict', { inputs: { a, b } });
    expectClose(columnar.json.outputs.total, want.outputs.total);
    expectClose(columnar.json.outputs.scaled, want.outputs.scaled);
    const response = await grpcCall('Predict', {
      model_spec: { name: 'two_io' },
      inputs: tensorProtos(want.inputs),
      output_filter: ['total'],
    });
    expect(Object.keys(response.outputs)).toEqual(['total']);
    expectClose(nested(response.outputs.total), want.outputs.total);
  });

  it('feeds an int64 input from JSON numbers and gRPC int64_val, answers int64 and bool outputs', async () => {
    const want = answers.int64_in!.serving_default!;
    const row = await request(port, 'POST', '/v1/models/int64_in:predict', { inputs: want.inputs.ids });
    expect(row.status).toBe(200);
    for (const key of ['score', 'doubled', 'positive']) expectClose(row.json.outputs[key], want.outputs[key]);
    // A DT_BOOL output is JSON true/false, as TF Serving answers it.
    expect(row.json.outputs.positive).toEqual([
      [true, true],
      [false, true],
    ]);
    const response = await grpcCall('Predict', {
      model_spec: { name: 'int64_in' },
      inputs: tensorProtos(want.inputs, true),
    });
    for (const key of ['score', 'doubled', 'positive']) expectClose(nested(response.outputs[key]), want.outputs[key]);
    // TF Serving's clients read each output in the signature's own dtype.
    expect(['score', 'doubled', 'positive'].map((k) => response.outputs[k].dtype)).toEqual([
      'DT_FLOAT',
      'DT_INT64',
      'DT_BOOL',
    ]);
    const tooBig = await grpcCall('Predict', {
      model_spec: { name: 'int64_in' },
      inputs: tensorProtos({ ids: [[1, 5_000_000_000]] }, true),
    }).catch((error: grpc.ServiceError) => error);
    expect((tooBig as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((tooBig as grpc.ServiceError).details).toMatch(
      /inputs\.ids\.int64_val\[1\]: 5000000000 is outside the int32/,
    );
    // 2 × 1.5e9 overflows int32 on the way back: refused with the output's name, not wrapped.
    const overflow = await request(port, 'POST', '/v1/models/int64_in:predict', { instances: [[1, 1_500_000_000]] });
    expect(overflow.status).toBe(500);
    expect(overflow.json.error).toMatch(/output doubled \(DT_INT64\) holds 3000000000, outside the int32 range/);
  });

  it('answers a binary PredictRequest body in protobuf', async () => {
    const protos = loadServingProtos();
    const want = answers.two_io!.serving_default!;
    const body = protos.encodePredictRequest({ model_spec: { name: 'two_io' }, inputs: tensorProtos(want.inputs) });
    const answer = await request(port, 'POST', '/v1/models/two_io:predict', body, {
      'content-type': 'application/x-protobuf',
      accept: 'application/x-protobuf',
    });
    expect(answer.status).toBe(200);
    const decoded = protos.decodePredictResponse(answer.body) as any;
    expectClose(nested(decoded.outputs.total), want.outputs.total);
    expectClose(nested(decoded.outputs.scaled), want.outputs.scaled);
  });

  it('feeds a float64 input as float32 and answers its float64 output as DT_DOUBLE over gRPC', async () => {
    const want = answers.float64_in!.serving_default!;
    const row = await request(port, 'POST', '/v1/models/float64_in:predict', { instances: want.inputs.x });
    expect(row.status).toBe(200);
    expectClose(row.json.predictions, want.outputs.y);
    const shape = { dim: [{ size: '3' }] };
    const response = await grpcCall('Predict', {
      model_spec: { name: 'float64_in' },
      inputs: { x: { dtype: 'DT_DOUBLE', tensor_shape: shape, double_val: want.inputs.x } },
    });
    expect(response.outputs.y.dtype).toBe('DT_DOUBLE');
    expectClose(nested(response.outputs.y), want.outputs.y);
    // tensor_content: 8 little-endian bytes per value, as tf.make_tensor_proto writes float64.
    const content = Buffer.from(new Float64Array(want.inputs.x as number[]).buffer);
    const packed = await grpcCall('Predict', {
      model_spec: { name: 'float64_in' },
      inputs: { x: { dtype: 'DT_DOUBLE', tensor_shape: shape, tensor_content: content } },
    });
    expectClose(nested(packed.outputs.y), want.outputs.y);
    const metadata = (await request(port, 'GET', '/v1/models/float64_in/metadata')).json.metadata.signature_def;
    expect(metadata.signature_def.serving_default.outputs.y.dtype).toBe('DT_DOUBLE');
  });

  it('feeds string inputs from JSON strings, {"b64"} values and gRPC string_val; answers strings', async () => {
    const want = answers.string_in!.serving_default!;
    const words = want.inputs.word as string[];
    const row = await request(port, 'POST', '/v1/models/string_in:predict', { instances: words });
    expect(row.status).toBe(200);
    expect(row.json.predictions.map((p: any) => p.length)).toEqual(want.outputs.length);
    expect(row.json.predictions.map((p: any) => p.id)).toEqual(want.outputs.id);
    expect(row.json.predictions.map((p: any) => p.upper)).toEqual(want.outputs.upper);
    // An output key ending in _bytes answers {"b64": …}, as TF Serving does.
    expect(row.json.predictions.map((p: any) => Buffer.from(p.raw_bytes.b64, 'base64').toString())).toEqual(words);
    const b64 = words.map((w) => ({ b64: Buffer.from(w).toString('base64') }));
    const columnar = await request(port, 'POST', '/v1/models/string_in:predict', { inputs: { word: b64 } });
    expect(columnar.status).toBe(200);
    expect(columnar.json.outputs.id).toEqual(want.outputs.id);
    expect(columnar.json.outputs.upper).toEqual(want.outputs.upper);
    const response = await grpcCall('Predict', {
      model_spec: { name: 'string_in' },
      inputs: {
        word: {
          dtype: 'DT_STRING',
          tensor_shape: { dim: [{ size: String(words.length) }] },
          string_val: words.map((w) => Buffer.from(w)),
        },
      },
    });
    expect(response.outputs.upper.dtype).toBe('DT_STRING');
    expect(nested(response.outputs.upper)).toEqual(want.outputs.upper);
    expect(nested(response.outputs.id)).toEqual(want.outputs.id);
    expect(nested(response.outputs.length)).toEqual(want.outputs.length);
    const metadata = (await request(port, 'GET', '/v1/models/string_in/metadata')).json.metadata.signature_def;
    expect(metadata.signature_def.serving_default.inputs.word.dtype).toBe('DT_STRING');
    // A number where a string belongs, and a string over the per-element limit: 400s naming the element.
    const wrong = await request(port, 'POST', '/v1/models/string_in:predict', { instances: ['cat', 7] });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error).toMatch(/instances\[1\]: expected a string or \{"b64": …\} \(dtype DT_STRING\)/);
    const huge = await request(port, 'POST', '/v1/models/string_in:predict', {
      instances: [{ b64: Buffer.alloc(8 * 1024 * 1024 + 1).toString('base64') }],
    });
    expect(huge.status).toBe(400);
    expect(huge.json.error).toMatch(/a string of 8388609 bytes exceeds 8388608/);
  });

  it('feeds a bool input from JSON true/false and gRPC bool_val', async () => {
    const want = answers.bool_in!.serving_default!;
    const { flag, x } = want.inputs as { flag: boolean[]; x: number[] };
    const row = await request(port, 'POST', '/v1/models/bool_in:predict', {
      instances: flag.map((f, i) => ({ flag: f, x: x[i] })),
    });
    expect(row.status).toBe(200);
    expectClose(
      row.json.predictions.map((p: any) => p.y),
      want.outputs.y,
    );
    const columnar = await request(port, 'POST', '/v1/models/bool_in:predict', { inputs: { flag, x } });
    expectClose(columnar.json.outputs.y, want.outputs.y);
    expectClose(columnar.json.outputs.flipped, want.outputs.flipped);
    const shape = { dim: [{ size: String(flag.length) }] };
    const response = await grpcCall('Predict', {
      model_spec: { name: 'bool_in' },
      inputs: {
        flag: { dtype: 'DT_BOOL', tensor_shape: shape, bool_val: flag },
        x: { dtype: 'DT_FLOAT', tensor_shape: shape, float_val: x },
      },
    });
    expectClose(nested(response.outputs.y), want.outputs.y);
    expect(response.outputs.flipped.dtype).toBe('DT_BOOL');
    expectClose(nested(response.outputs.flipped), want.outputs.flipped);
    // An int32 tensor where the signature wants DT_BOOL: refused, as TF Serving does (no silent casts).
    const wrong = await grpcCall('Predict', {
      model_spec: { name: 'bool_in' },
      inputs: {
        flag: { dtype: 'DT_INT32', tensor_shape: shape, int_val: [1, 0, 1] },
        x: { dtype: 'DT_FLOAT', tensor_shape: shape, float_val: x },
      },
    }).catch((error: grpc.ServiceError) => error);
    expect((wrong as grpc.ServiceError).details).toMatch(/inputs\.flag: dtype DT_INT32 does not match .* DT_BOOL/);
  });

  it('serves classify and regress signatures on tf.Examples over REST and gRPC', async () => {
    const want = answers.examples_in!;
    type Example = Record<string, (number | string)[]>;
    const examples = want.serving_default!.inputs.examples as Example[];
    const classes = want.serving_default!.outputs.classes as string[][];
    const scores = want.serving_default!.outputs.scores as number[][];
    const values = (want.regress_value!.outputs.outputs as number[][]).map((row) => row[0]!);
    // REST: features as JSON (strings are bytes_list, whole numbers int64_list, others float_list), TF Serving's
    // `context` merged under each example.
    const rest = examples.map(({ color, ...rest }) => rest);
    const body = { context: { color: 'blue' }, examples: rest.map((e, i) => (i === 0 ? { ...e, color: 'red' } : e)) };
    const classified = await request(port, 'POST', '/v1/models/examples_in:classify', body);
    expect(classified.status).toBe(200);
    expect(classified.json.results.map((r: [string, number][]) => r.map(([label]) => label))).toEqual(classes);
    expectClose(
      classified.json.results.map((r: [string, number][]) => r.map(([, score]) => score)),
      scores,
    );
    const regressed = await request(port, 'POST', '/v1/models/examples_in:regress', {
      signature_name: 'regress_value',
      ...body,
    });
    expect(regressed.status).toBe(200);
    expectClose(regressed.json.results, values);
    // gRPC: the Input's example_list, and example_list_with_context.
    const feature = (key: string, v: (number | string)[]) =>
      typeof v[0] === 'string'
        ? { bytes_list: { value: v.map((s) => Buffer.from(String(s))) } }
        : key === 'count'
          ? { int64_list: { value: v.map(String) } }
          : { float_list: { value: v } };
    const asMessage = (e: Example) => ({
      features: { feature: Object.fromEntries(Object.entries(e).map(([k, v]) => [k, feature(k, v)])) },
    });
    const classification = await grpcCall('Classify', {
      model_spec: { name: 'examples_in' },
      input: { example_list: { examples: examples.map(asMessage) } },
    });
    const got = classification.result.classifications as { classes: { label: string; score: number }[] }[];
    expect(got.map((c) => c.classes.map((k) => k.label))).toEqual(classes);
    expectClose(
      got.map((c) => c.classes.map((k) => k.score)),
      scores,
    );
    const regression = await grpcCall('Regress', {
      model_spec: { name: 'examples_in', signature_name: 'regress_value' },
      input: {
        example_list_with_context: {
          context: asMessage({ color: ['blue'] }),
          examples: examples.map((e, i) => asMessage(i === 0 ? e : { ...e, color: ['blue'] })),
        },
      },
    });
    expect(regression.model_spec.signature_name).toBe('regress_value');
    expectClose(
      regression.result.regressions.map((r: { value: number }) => r.value),
      values,
    );
    // A classify signature asked to regress, and a predict model asked to: refused with the reason.
    const wrongMethod = await request(port, 'POST', '/v1/models/examples_in:regress', body);
    expect(wrongMethod.status).toBe(400);
    expect(wrongMethod.json.error).toMatch(/is a tensorflow\/serving\/classify signature; :regress needs/);
    const predictOnly = await request(port, 'POST', '/v1/models/half_plus_two:regress', { examples: [{ x: 1 }] });
    expect(predictOnly.status).toBe(501);
    expect(predictOnly.json.error).toMatch(/regress is served for a SavedModel's regression signature/);
  });

  it('answers a malformed tf.Example with a 400 naming the example', async () => {
    // A value that is no feature value: refused before the model runs.
    const bad = await request(port, 'POST', '/v1/models/examples_in:classify', {
      examples: [{ x: [1.5, 2.5] }, { x: [1.5, { a: 1 }] }],
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/examples\[1\]\.x\[1\]: expected a number, a string or \{"b64": …\}/);
    // Examples that encode but do not parse: the required "x" missing, or of the wrong length.
    const missing = await request(port, 'POST', '/v1/models/examples_in:classify', {
      examples: [{ x: [1.5, 2.5] }, { x: [0.5, 0.25] }, { count: 3 }],
    });
    expect(missing.status).toBe(400);
    expect(missing.json.error).toMatch(/^examples\[2\]: the model could not parse it: .*x/);
    const short = await grpcCall('Classify', {
      model_spec: { name: 'examples_in' },
      input: {
        example_list: {
          examples: [
            { features: { feature: { x: { float_list: { value: [0.5] } } } } },
            { features: { feature: { x: { float_list: { value: [0.5, 1.5] } } } } },
          ],
        },
      },
    }).catch((error: grpc.ServiceError) => error);
    expect((short as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((short as grpc.ServiceError).details).toMatch(/^examples\[0\]: the model could not parse it/);
  });

  it('answers a float16 signature with UNIMPLEMENTED naming the input and dtype', async () => {
    const answer = await request(port, 'POST', '/v1/models/float16_in:predict', { instances: [1.5] });
    expect(answer.status).toBe(501);
    expect(answer.json.error).toMatch(/input "x" has dtype DT_HALF, which the native binding cannot feed/);
  });

  it('puts a hostile saved_model.pb or warm-up file in error without touching the other models', async () => {
    await until(async () => (await status('random'))?.model_version_status?.[0]?.state === 'END', 30_000);
    await until(async () => (await status('truncated'))?.model_version_status?.[0]?.state === 'END', 30_000);
    await until(async () => (await status('bad_warmup'))?.model_version_status?.[0]?.state === 'END', 30_000);
    const message = async (model: string) => (await status(model)).model_version_status[0].status.error_message;
    expect(await message('random')).toMatch(/saved_model\.pb is not a SavedModel/);
    expect(await message('truncated')).toMatch(/saved_model\.pb is not a SavedModel/);
    expect(await message('bad_warmup')).toMatch(/warm-up failed: assets\.extra\/tf_serving_warmup_requests: record 0/);
    const ok = await request(port, 'POST', '/v1/models/half_plus_two:predict', { instances: [4] });
    expect(ok.json.predictions).toEqual([4]);
  });

  it('hot-swaps a SavedModel version and routes a label to it', async () => {
    await cp(path.join(fixtures, 'half_plus_two/1'), path.join(base, 'swap/1'), { recursive: true });
    await until(async () => (await status('swap'))?.model_version_status?.[0]?.state === 'AVAILABLE', 30_000);
    expect((await request(port, 'POST', '/v1/models/swap:predict', { instances: [2] })).json.predictions).toEqual([3]);
    // Version 2: the Keras export replaces half_plus_two under the same model name.
    const staging = path.join(fixtures, 'staging-swap-2');
    await cp(path.join(fixtures, 'keras_mlp/1'), staging, { recursive: true });
    const { rename } = await import('node:fs/promises');
    await rename(staging, path.join(base, 'swap/2'));
    const want = answers.keras_mlp!.serving_default!;
    const rows = Object.values(want.inputs)[0] as number[][];
    await until(
      async () =>
        (await request(port, 'POST', '/v1/models/swap:predict', { instances: rows })).headers[
          'x-gantry-model-version'
        ] === '2',
      30_000,
    );
    const swapped = await request(port, 'POST', '/v1/models/swap:predict', { instances: rows });
    expectClose(swapped.json.predictions, Object.values(want.outputs)[0]);
    const labelled = await request(port, 'PUT', '/v1/admin/models/swap/labels/stable', { version: 2 }, AUTH);
    expect(labelled.status).toBe(200);
    const byLabel = await request(port, 'POST', '/v1/models/swap/labels/stable:predict', { instances: rows });
    expect(byLabel.headers['x-gantry-model-version']).toBe('2');
    expectClose(byLabel.json.predictions, Object.values(want.outputs)[0]);
  });
});
