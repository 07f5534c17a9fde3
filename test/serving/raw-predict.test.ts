import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../engine/backend';
import { loadServingProtos } from '../../serving/grpc/protos';
import type { ModelServer } from '../../serving/server';
import { fashionBase, maxDiff, predictInProcess, removeDir, startServer, testExamples } from './helpers';

/**
 * Predict answered beneath grpc-js, from the HTTP/2 stream (serving/grpc/raw-predict.ts): what it takes (a plain
 * unary call), what it hands to grpc-js (compressed calls), and how it refuses bodies that are not one gRPC message.
 */

const PREDICT = '/tensorflow.serving.PredictionService/Predict';
const LIMIT = 64 * 1024;
let base: string;
let server: ModelServer;
let body: Buffer;
let expected: Float32Array;

/** A gRPC call as raw HTTP/2: `payload` is sent as is (length prefix included); the status, message and trailers. */
function rawCall(port: number, payload: Buffer, headers: http2.OutgoingHttpHeaders = {}) {
  return new Promise<{ status: string; message: string; trailers: http2.IncomingHttpHeaders; data: Buffer }>(
    (resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on('error', reject);
      const stream = session.request({
        ':method': 'POST',
        ':path': PREDICT,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      });
      const chunks: Buffer[] = [];
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on('response', (h) => (head = h));
      stream.on('trailers', (t) => (trailers = t));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        session.close();
        const last = trailers['grpc-status'] !== undefined ? trailers : head;
        resolve({
          status: String(last['grpc-status']),
          message: decodeURIComponent(String(last['grpc-message'] ?? '')),
          trailers,
          data: Buffer.concat(chunks),
        });
      });
      stream.end(payload);
    },
  );
}

function framed(message: Buffer, flag = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

beforeAll(async () => {
  await selectBackend();
  const pixels = Float32Array.from((await testExamples(200, 1)).images);
  const published = await fashionBase('raw-predict', 5);
  base = published.base;
  expected = await predictInProcess(published.files[0], pixels, 1);
  body = loadServingProtos().encodePredictRequest({
    model_spec: { name: 'fashion' },
    inputs: {
      input: {
        dtype: 'DT_FLOAT',
        tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size: String(size) })) },
        tensor_content: Buffer.from(pixels.buffer),
      },
    },
  });
  server = await startServer(base, { restPort: null, grpcPort: 0, bodyLimitBytes: LIMIT });
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

describe('Predict beneath grpc-js', () => {
  it('answers a plain call with the prediction, and the version and request id in its trailers', async () => {
    const answer = await rawCall(server.grpcPort!, framed(body));
    expect(answer.status).toBe('0');
    expect(answer.trailers['x-gantry-model-version']).toBe('1');
    expect(String(answer.trailers['x-request-id'])).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.data.readUInt32BE(1)).toBe(answer.data.length - 5);
    const response = loadServingProtos().decodePredictResponse(answer.data.subarray(5)) as {
      outputs: { probabilities: { float_val: number[] } };
    };
    expect(maxDiff(response.outputs.probabilities.float_val, expected)).toBeLessThan(1e-6);
  });

  it('leaves a compressed call to grpc-js, which answers it the same', async () => {
    const client = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure(), {
      'grpc.default_compression_algorithm': 2, // gzip: the request carries grpc-encoding
    });
    const answer = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        PREDICT,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        (error, value) => (error ? reject(error) : resolve(value!)),
      ),
    );
    client.close();
    const response = loadServingProtos().decodePredictResponse(answer) as {
      outputs: { probabilities: { float_val: number[] } };
    };
    expect(maxDiff(response.outputs.probabilities.float_val, expected)).toBeLessThan(1e-6);
  });

  it('refuses what is not one gRPC message, and a body over the limit, with gRPC statuses', async () => {
    const port = server.grpcPort!;
    const short = framed(body).subarray(0, 100);
    expect(await rawCall(port, short)).toMatchObject({
      status: '13',
      message: 'the request is not one length-prefixed gRPC message',
    });
    expect(await rawCall(port, framed(body, 1))).toMatchObject({
      status: '12',
      message: 'a compressed message without grpc-encoding',
    });
    expect(await rawCall(port, framed(Buffer.alloc(LIMIT + 1)))).toMatchObject({
      status: '8',
      message: `the request is larger than ${LIMIT} bytes (the server's max receive message length)`,
    });
    // The server still answers after each.
    expect((await rawCall(port, framed(body))).status).toBe('0');
  });
});
