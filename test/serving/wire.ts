import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/**
 * Hand-made protobuf for the abuse and float tests: bodies that no well-behaved encoder would write (a million dims,
 * NaN in tensor_content, unknown fields), built field by field. Also the process's memory from /proc, for the tests
 * that bound what a hostile body costs.
 */

export function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

/** A length-delimited field. */
export function field(number: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([...varint((number << 3) | 2), ...varint(payload.length)]), payload]);
}

/** A TensorProto's tensor_shape (field 2) with these dims. */
export function shapeField(dims: number[]): Buffer {
  return field(2, Buffer.concat(dims.map((d) => field(2, Buffer.from([0x08, ...varint(d)])))));
}

/** This process's resident set (VmRSS) or its peak since the last reset (VmHWM), in bytes; Linux's /proc. */
export function rss(which: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${which}:`));
  return Number(line?.match(/(\d+) kB/)?.[1] ?? Number.NaN) * 1024;
}

/** A Predict call whose body is these bytes as they are (no encoder in between): its status code and details. */
export function grpcPredictBytes(port: number, body: Buffer): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/tensorflow.serving.PredictionService/Predict',
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      (error) => {
        client.close();
        resolve({ code: error?.code ?? 0, details: error?.details ?? '' });
      },
    );
  });
}
