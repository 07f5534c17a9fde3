import { writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../engine/backend';
import { jsonFeature, messageFeature } from '../../serving/examples';
import { decodePredictInputs } from '../../serving/grpc/tensor-proto';
import type { ModelServer } from '../../serving/server';
import type { Signature } from '../../serving/signature';
import { fashionBase, PIXELS, predictionServiceClient, removeDir, request, startServer } from './helpers';
import { field, grpcPredictBytes, rss, shapeField, varint } from './wire';

/**
 * Float32 overflow and NaN/±Infinity on every input path, against one real server (REST and gRPC): each path ×
 * {1e39, -1e39, NaN, Infinity, -Infinity, an ordinary value} gives 400 / INVALID_ARGUMENT naming the input and the
 * element, or 200 / OK for the ordinary value. Binary encodings carry float32, where 1e39 is already Infinity.
 * The odd value sits at pixel 30 of the image: element [0][1][2][0] of [1, 28, 28, 1].
 */

let base: string;
let server: ModelServer;

beforeAll(async () => {
  await selectBackend();
  ({ base } = await fashionBase('floats', 5));
  server = await startServer(base, { grpcPort: 0 });
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

const AT = 30;
const INDEX = '[0][1][2][0]';
const INDEX_RE = INDEX.replace(/[[\]]/g, '\\$&');

/** One image of 0.25 with `value` at pixel AT, as float32. */
function pixels(value: number): Float32Array {
  const out = new Float32Array(PIXELS).fill(0.25);
  out[AT] = value;
  return out;
}

/** The image as JSON text ([28][28][1]), `text` spelling pixel AT (NaN and Infinity are not JSON: raw text). */
function imageJson(text: string): string {
  const rows = Array.from({ length: 28 }, (_, y) =>
    Array.from({ length: 28 }, (_, x) => `[${y * 28 + x === AT ? text : '0.25'}]`).join(','),
  );
  return `[${rows.map((r) => `[${r}]`).join(',')}]`;
}

/** A PredictRequest for model "fashion", input "input": DT_FLOAT of `dims` whose values are `values` (fields). */
function predictRequest(values: Buffer, dims = [1, 28, 28, 1]): Buffer {
  const tensor = Buffer.concat([Buffer.from([0x08, 1]), shapeField(dims), values]);
  const spec = field(1, field(1, Buffer.from('fashion')));
  return Buffer.concat([spec, field(2, Buffer.concat([field(1, Buffer.from('input')), field(2, tensor)]))]);
}

const bytesOf = (data: Float32Array) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);
/** tensor_content (field 4). */
const content = (value: number) => field(4, bytesOf(pixels(value)));
/** Packed float_val (field 5). */
const packed = (value: number) => field(5, bytesOf(pixels(value)));
/** Unpacked float_val: one fixed32 field per value, which the fast reader leaves to the general decoder. */
const unpacked = (value: number) =>
  Buffer.concat(Array.from(pixels(value), (v) => Buffer.concat([Buffer.from([0x2d]), bytesOf(Float32Array.of(v))])));

/** TF Serving's own client (proto-loader), float_val as a list of numbers. */
function grpcFloatVal(value: number): Promise<{ code: number; details: string }> {
  const client = predictionServiceClient(server.grpcPort!);
  const body = {
    model_spec: { name: 'fashion' },
    inputs: {
      input: {
        dtype: 'DT_FLOAT',
        tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) },
        float_val: Array.from(pixels(value)),
      },
    },
  };
  return new Promise((resolve) => {
    client.Predict(body, (error: grpc.ServiceError | null) => {
      client.close();
      resolve({ code: error?.code ?? 0, details: error?.details ?? '' });
    });
  });
}

/** gRPC Classify with the image as one tf.Example's float_list. */
function grpcClassify(value: number): Promise<{ code: number; details: string }> {
  const client = predictionServiceClient(server.grpcPort!);
  const example = { features: { feature: { input: { float_list: { value: Array.from(pixels(value)) } } } } };
  const body = { model_spec: { name: 'fashion' }, input: { example_list: { examples: [example] } } };
  return new Promise((resolve) => {
    client.Classify(body, (error: grpc.ServiceError | null) => {
      client.close();
      resolve({ code: error?.code ?? 0, details: error?.details ?? '' });
    });
  });
}

async function rest(body: string | Buffer, contentType: string) {
  const answer = await request(server.restPort!, 'POST', '/v1/models/fashion:predict', body, {
    'content-type': contentType,
  });
  return { status: answer.status, error: String(answer.json?.error ?? '') };
}

type Value = '1e39' | '-1e39' | 'NaN' | 'Infinity' | '-Infinity' | 'ok';
const VALUES: Value[] = ['1e39', '-1e39', 'NaN', 'Infinity', '-Infinity', 'ok'];
const numberOf = (v: Value) => (v === 'ok' ? 0.5 : Number(v));

/** What a binary path answers: float32 bytes cannot hold 1e39 (it is Infinity there). */
const binaryError = (v: Value) => {
  const shown = Number.isNaN(numberOf(v)) ? 'NaN' : numberOf(v) > 0 ? 'Infinity' : '-Infinity';
  return new RegExp(`input "input"${INDEX_RE}: ${shown} is not a finite number`);
};

/** What the general protobuf decoder answers: its schema takes finite numbers only, naming the element. */
const decoderError = (v: Value) => {
  const shown = Number.isNaN(numberOf(v)) ? 'NaN' : numberOf(v) > 0 ? 'Infinity' : '-Infinity';
  return new RegExp(`inputs\\.input: not a TensorProto: float_val\\.${AT}: .*received ${shown}$`);
};

/** Each path: how to send a value, and the error that must name it. */
const PATHS: {
  name: string;
  protocol: 'rest' | 'grpc';
  send: (v: Value) => Promise<{ status?: number; code?: number; error?: string; details?: string }>;
  error: (v: Value) => RegExp;
}[] = [
  {
    name: 'REST JSON dense (fast scanner)',
    protocol: 'rest',
    send: (v) => rest(`{"instances": [${imageJson(v === 'ok' ? '0.5' : v)}]}`, 'application/json'),
    error: (v) =>
      v.endsWith('1e39')
        ? new RegExp(`instances${INDEX_RE}: -?1e\\+39 is outside the float32 range`)
        : new RegExp(`instances${INDEX_RE}: ${v} is not a JSON number`),
  },
  {
    name: 'REST JSON general (named inputs)',
    protocol: 'rest',
    send: (v) => rest(`{"instances": [{"input": ${imageJson(v === 'ok' ? '0.5' : v)}}]}`, 'application/json'),
    // JSON.parse refuses NaN and Infinity as a syntax error, at their position in the body.
    error: (v) =>
      v.endsWith('1e39')
        ? new RegExp(`instances\\[0\\]\\.input\\[1\\]\\[2\\]\\[0\\]: -?1e\\+39 is outside the float32 range`)
        : /not valid JSON|Unexpected token/,
  },
  {
    name: 'REST JSON b64 (columnar)',
    protocol: 'rest',
    send: (v) => rest(`{"inputs": {"b64": "${bytesOf(pixels(numberOf(v))).toString('base64')}"}}`, 'application/json'),
    error: binaryError,
  },
  {
    name: 'REST raw octet-stream',
    protocol: 'rest',
    send: (v) => rest(bytesOf(pixels(numberOf(v))), 'application/octet-stream'),
    error: binaryError,
  },
  {
    name: 'REST protobuf tensor_content (fast reader)',
    protocol: 'rest',
    send: (v) => rest(predictRequest(content(numberOf(v))), 'application/x-protobuf'),
    error: binaryError,
  },
  {
    name: 'REST protobuf unpacked float_val (general decoder)',
    protocol: 'rest',
    send: (v) => rest(predictRequest(unpacked(numberOf(v))), 'application/x-protobuf'),
    error: decoderError,
  },
  {
    name: 'gRPC tensor_content (fast reader)',
    protocol: 'grpc',
    send: (v) => grpcPredictBytes(server.grpcPort!, predictRequest(content(numberOf(v)))),
    error: binaryError,
  },
  {
    name: 'gRPC packed float_val (fast reader)',
    protocol: 'grpc',
    send: (v) => grpcPredictBytes(server.grpcPort!, predictRequest(packed(numberOf(v)))),
    error: binaryError,
  },
  {
    name: 'gRPC unpacked float_val (general decoder)',
    protocol: 'grpc',
    send: (v) => grpcPredictBytes(server.grpcPort!, predictRequest(unpacked(numberOf(v)))),
    error: decoderError,
  },
  {
    name: "gRPC float_val from TF Serving's client",
    protocol: 'grpc',
    send: (v) => grpcFloatVal(numberOf(v)),
    error: binaryError,
  },
  {
    name: 'gRPC Classify float_list (tf.Example)',
    protocol: 'grpc',
    send: (v) => grpcClassify(numberOf(v)),
    error: (v) => {
      const shown = Number.isNaN(numberOf(v)) ? 'NaN' : numberOf(v) > 0 ? 'Infinity' : '-Infinity';
      return new RegExp(`float_list\\.value\\.${AT}.*received ${shown}`);
    },
  },
];

describe('float32 range and NaN/±Infinity on every input path', () => {
  it.each(PATHS.map((p) => [p.name, p] as const))('%s', async (_name, path) => {
    const results: Record<string, unknown> = {};
    const wanted: Record<string, unknown> = {};
    for (const v of VALUES) {
      const answer = await path.send(v);
      if (path.protocol === 'rest') {
        results[v] = { status: answer.status, error: answer.error };
        wanted[v] =
          v === 'ok' ? { status: 200, error: '' } : { status: 400, error: expect.stringMatching(path.error(v)) };
      } else {
        results[v] = { code: answer.code, details: answer.details };
        wanted[v] =
          v === 'ok'
            ? { code: grpc.status.OK, details: '' }
            : { code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(path.error(v)) };
      }
    }
    expect(results).toEqual(wanted);
  });

  it('DT_DOUBLE carried as float32: a double beyond float32 is refused naming the element, NaN by the server', () => {
    const signature = {
      name: 'serving_default',
      inputs: [{ key: 'x', dtype: 'float32', tfDType: 'DT_DOUBLE', shape: [-1, 2] }],
      outputs: [],
    } as unknown as Signature;
    const tensor = (double_val: number[]) => ({
      x: { dtype: 'DT_DOUBLE', tensor_shape: { dim: [{ size: 1 }, { size: 2 }] }, double_val },
    });
    expect(() => decodePredictInputs(tensor([1, 1e39]), signature, 10)).toThrow(
      /inputs\.x\.double_val\[1\]: 1e\+39 is outside the float32 range/,
    );
    const content = Buffer.alloc(16);
    content.writeDoubleLE(-1e300, 0);
    expect(() =>
      decodePredictInputs(
        { x: { dtype: 'DT_DOUBLE', tensor_shape: { dim: [{ size: 1 }, { size: 2 }] }, tensor_content: content } },
        signature,
        10,
      ),
    ).toThrow(/inputs\.x\.tensor_content\[0\]: -1e\+300 is outside the float32 range/);
    expect(Array.from(decodePredictInputs(tensor([3.5, -2]), signature, 10)[0]!.data)).toEqual([3.5, -2]);
  });
});

describe('tf.Example features (a SavedModel classify or regress signature)', () => {
  it('a float_list value beyond float32 or not finite is refused naming the feature and the element', () => {
    expect(() => jsonFeature([0.5, 1e39], 'examples[0].x')).toThrow(
      /^examples\[0\]\.x\[1\]: 1e\+39 is outside the float32 range$/,
    );
    expect(() => jsonFeature(-1e39, 'context.y', 'float')).toThrow(/^context\.y: -1e\+39 is outside the float32/);
    expect(() => messageFeature({ float_list: { value: [0.5, 2, Number.NaN] } }, 'examples[3].x')).toThrow(
      /^examples\[3\]\.x\.float_list\.value\[2\]: NaN is not a finite number$/,
    );
    expect(jsonFeature([0.5, 3.4e38], 'examples[0].x')).toEqual({ kind: 'float', values: [0.5, 3.4e38] });
    expect(jsonFeature([3, 4], 'examples[0].n')).toMatchObject({ kind: 'int64' });
  });
});

describe("gRPC's dense fast reader does not skip the pre-scan", () => {
  it('what it reads but cannot answer is pre-scanned with the signature before proto-loader decodes it', async () => {
    // Read by the fast reader (a dense DT_FLOAT tensor) but not the signature's shape: the pre-scan's error, which
    // names the batch limit (the general decoder's does not), shows the pre-scan ran.
    expect(
      await grpcPredictBytes(server.grpcPort!, predictRequest(field(4, Buffer.alloc(PIXELS * 2 * 4)), [1, 28, 28, 2])),
    ).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/inputs\.input: shape \[1, 28, 28, 2\] .* any batch size from 1 to \d+/),
    });
    // A million dims (4 MB): the fast reader stops at 8 and the pre-scan refuses the rest, cheaply.
    const dims = Buffer.alloc(1_000_000 * 4);
    for (let i = 0; i < 1_000_000; i++) dims.set([0x12, 0x02, 0x08, 0x01], i * 4);
    const body = Buffer.concat([
      field(1, field(1, Buffer.from('fashion'))),
      field(
        2,
        Buffer.concat([field(1, Buffer.from('input')), field(2, Buffer.concat([Buffer.from([8, 1]), field(2, dims)]))]),
      ),
    ]);
    writeFileSync('/proc/self/clear_refs', '5');
    const before = rss('VmRSS');
    const start = performance.now();
    const answer = await grpcPredictBytes(server.grpcPort!, body);
    const ms = performance.now() - start;
    const growth = rss('VmHWM') - before;
    console.log('gRPC million dims', body.length, { ...answer, ms, growth });
    expect(answer).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'inputs.input.tensor_shape: more than 8 dims',
    });
    expect(ms).toBeLessThan(1000);
    expect(growth).toBeLessThan(50 * 1024 * 1024);
  });
});
