import { createRequire } from 'node:module';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type protobufType from 'protobufjs';
import { TENSORFLOW_PROTO_ROOT } from '../engine/protos';
import { PROTO_ROOT } from './grpc/protos';

/**
 * TF Serving's warm-up file for SavedModels: `assets.extra/tf_serving_warmup_requests`, a TFRecord
 * file of PredictionLog messages. Each PredictLog's request is replayed before the version turns
 * AVAILABLE (as TF Serving does), so the first real request meets a warm session. The file is
 * bounded (size, record count, record length) and every record's CRC is checked; any fault fails the
 * load, naming the file and the record.
 */

export const WARMUP_RECORDS_FILE = 'assets.extra/tf_serving_warmup_requests';
/** TF Serving's own cap on warm-up records. */
export const MAX_WARMUP_RECORDS = 1000;
export const MAX_WARMUP_BYTES = 64 * 1024 * 1024;

export interface WarmupRequest {
  signatureName: string;
  /** TensorProtos by input key, in proto-loader's shape (what tensor-proto.ts decodes). */
  inputs: Record<string, unknown>;
}

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs') as typeof protobufType;

let predictionLog: protobufType.Type | undefined;
function PredictionLogType(): protobufType.Type {
  if (!predictionLog) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) =>
      target.startsWith('tensorflow_serving/')
        ? path.join(PROTO_ROOT, target)
        : path.join(TENSORFLOW_PROTO_ROOT, target);
    predictionLog = root
      .loadSync('tensorflow_serving/apis/prediction_log.proto', { keepCase: true })
      .lookupType('tensorflow.serving.PredictionLog');
  }
  return predictionLog;
}

/** CRC-32C (Castagnoli), masked as TFRecord stores it. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function maskedCrc(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  crc = (crc ^ 0xffffffff) >>> 0;
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** The records of a TFRecord file's bytes (`file` names it in errors). */
export function tfRecords(bytes: Buffer, file: string, maxRecords: number): Buffer[] {
  const records: Buffer[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    const where = `${file}: record ${records.length} (byte ${at})`;
    if (records.length >= maxRecords) throw new Error(`${file} holds more than ${maxRecords} records`);
    if (at + 12 > bytes.byteLength) throw new Error(`${where} is truncated in its header`);
    const length = bytes.readBigUInt64LE(at);
    if (bytes.readUInt32LE(at + 8) !== maskedCrc(bytes.subarray(at, at + 8)))
      throw new Error(`${where}: the length's checksum is wrong`);
    if (length > BigInt(bytes.byteLength - at - 16)) throw new Error(`${where}: length ${length} runs past the file`);
    const start = at + 12;
    const end = start + Number(length);
    const data = bytes.subarray(start, end);
    if (bytes.readUInt32LE(end) !== maskedCrc(data)) throw new Error(`${where}: the data's checksum is wrong`);
    records.push(data);
    at = end + 4;
  }
  return records;
}

/** The folder's warm-up requests, or undefined when it has no warm-up file. */
export async function readWarmupRequests(dir: string): Promise<WarmupRequest[] | undefined> {
  const file = path.join(dir, WARMUP_RECORDS_FILE);
  const info = await stat(file).catch(() => undefined);
  if (!info) return undefined;
  if (!info.isFile()) throw new Error(`${WARMUP_RECORDS_FILE} is not a file`);
  if (info.size > MAX_WARMUP_BYTES)
    throw new Error(`${WARMUP_RECORDS_FILE} is ${info.size} bytes, over the limit of ${MAX_WARMUP_BYTES}`);
  const records = tfRecords(await readFile(file), WARMUP_RECORDS_FILE, MAX_WARMUP_RECORDS);
  if (records.length === 0) throw new Error(`${WARMUP_RECORDS_FILE} holds no records`);
  const type = PredictionLogType();
  return records.map((record, i) => {
    let log: { predict_log?: { request?: { model_spec?: { signature_name?: string }; inputs?: object } } };
    try {
      log = type.toObject(type.decode(record), { longs: String, enums: String, defaults: true }) as typeof log;
    } catch (error) {
      throw new Error(`${WARMUP_RECORDS_FILE} record ${i} is not a PredictionLog: ${(error as Error).message}`);
    }
    const request = log.predict_log?.request;
    if (!request)
      throw new Error(`${WARMUP_RECORDS_FILE} record ${i}: only PredictLog records (predict requests) are replayed`);
    return {
      signatureName: request.model_spec?.signature_name ?? '',
      inputs: (request.inputs ?? {}) as Record<string, unknown>,
    };
  });
}
