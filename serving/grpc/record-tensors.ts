import { z } from 'zod';
import { describeIssues } from '../../validation/issues';
import { invalidArgument } from '../errors';
import { dimsOf, TensorShapeSchema } from './tensor-proto';
import {
  columnIndex,
  encodeRecords,
  LABEL_COLUMN,
  recordAnswers,
  type EncodedRecords,
  type RecordInputs,
} from '../records';
import type { DenseTensor } from '../tensors';
import { fromBytes } from '../tensors';

/**
 * Raw records over gRPC Predict: one named tensor per column (its tensor name or its own name,
 * serving/records.ts), shape [N] or [N, 1], N records. Strings are DT_STRING `string_val`
 * (UTF-8), numbers DT_FLOAT / DT_DOUBLE / DT_INT32 / DT_INT64, booleans DT_BOOL; a column left
 * out is missing in every record. Answered with `scores` + `class` (a classifier) or `value`.
 */

const RecordTensorSchema = z
  .object({
    dtype: z.string(),
    tensor_shape: TensorShapeSchema,
    tensor_content: z.instanceof(Uint8Array).optional(),
    float_val: z.array(z.number()).optional(),
    double_val: z.array(z.number()).optional(),
    int_val: z.array(z.number()).optional(),
    int64_val: z.array(z.union([z.string(), z.number()])).optional(),
    string_val: z.array(z.instanceof(Uint8Array)).optional(),
    bool_val: z.array(z.boolean()).optional(),
  })
  .loose();

const decoder = new TextDecoder('utf-8', { fatal: true });

/** One column's values (rows of them), as the encoder reads raw values. */
function columnValues(raw: unknown, maxRows: number, where: string): unknown[] {
  const parsed = RecordTensorSchema.safeParse(raw);
  if (!parsed.success) throw invalidArgument(`${where}: not a TensorProto: ${describeIssues(parsed.error.issues)}`);
  const proto = parsed.data;
  const dims = dimsOf(proto.tensor_shape);
  const rows = dims[0];
  if (
    rows === undefined ||
    dims.length > 2 ||
    (dims.length === 2 && dims[1] !== 1) ||
    !(Number.isInteger(rows) && rows >= 1)
  )
    throw invalidArgument(`${where}: shape [${dims.join(', ')}]; a column is [N] or [N, 1] with N ≥ 1 records`);
  if (rows > maxRows) throw invalidArgument(`${where}: ${rows} records exceed the limit of ${maxRows} per request`);
  let values: unknown[];
  switch (proto.dtype) {
    case 'DT_STRING':
      values = (proto.string_val ?? []).map((bytes, i) => {
        try {
          return decoder.decode(bytes);
        } catch {
          throw invalidArgument(`${where}.string_val[${i}]: not UTF-8`);
        }
      });
      break;
    case 'DT_FLOAT':
      values =
        proto.tensor_content && proto.tensor_content.byteLength > 0
          ? Array.from(fromBytes(proto.tensor_content, 'float32', rows, `${where}.tensor_content`))
          : (proto.float_val ?? []);
      break;
    case 'DT_DOUBLE':
      values = proto.double_val ?? [];
      break;
    case 'DT_INT32':
      values = proto.int_val ?? [];
      break;
    case 'DT_INT64':
      values = (proto.int64_val ?? []).map(Number);
      break;
    case 'DT_BOOL':
      values = proto.bool_val ?? [];
      break;
    default:
      throw invalidArgument(
        `${where}: dtype ${proto.dtype}; a column is DT_STRING, DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64 or DT_BOOL`,
      );
  }
  if (values.length !== rows)
    throw invalidArgument(`${where}: ${values.length} ${proto.dtype} values for ${rows} records`);
  return values;
}

/** The PredictRequest's `inputs` (TensorProtos by column) as the model's encoded input. */
export function recordsFromTensors(
  inputs: Record<string, unknown>,
  records: RecordInputs,
  maxRows: number,
): EncodedRecords {
  const index = columnIndex(records);
  const keys = Object.keys(inputs);
  const unknown = keys.filter((k) => !index.has(k));
  if (unknown.length)
    throw invalidArgument(
      `inputs: unknown column ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the model's columns (tensor ` +
        `names) are ${records.columns.map((c) => JSON.stringify(c.tensorName)).join(', ')}`,
    );
  const columns = new Array<unknown[] | undefined>(records.columns.length);
  let rows = -1;
  for (const key of keys) {
    const c = index.get(key)!;
    if (c === LABEL_COLUMN) continue;
    const where = `inputs.${key}`;
    if (columns[c]) throw invalidArgument(`${where}: column ${JSON.stringify(records.columns[c]!.name)} given twice`);
    const values = columnValues(inputs[key], maxRows, where);
    if (rows !== -1 && values.length !== rows)
      throw invalidArgument(`${where}: ${values.length} records, the other columns have ${rows}`);
    rows = values.length;
    columns[c] = values;
  }
  if (rows === -1) throw invalidArgument('inputs: names no column');
  return encodeRecords(
    records,
    rows,
    (r, c) => columns[c]?.[r],
    (r) => `record ${r}`,
  );
}

function shapeOf(dims: number[]): object {
  return { dim: dims.map((size) => ({ size: String(size), name: '' })), unknown_rank: false };
}

/** The records' answers as PredictResponse outputs (those `filter` keeps, all without one). */
export function recordOutputTensors(
  records: { outputs: RecordInputs['outputs'] },
  output: DenseTensor,
  filter: ReadonlySet<string> | undefined,
): Record<string, object> {
  const answers = recordAnswers(records, output);
  const rows = answers.length;
  const tensors: Record<string, object> = {};
  const keep = (name: string) => !filter || filter.has(name);
  if (records.outputs.task === 'regression') {
    if (keep('value'))
      tensors.value = {
        dtype: 'DT_FLOAT',
        tensor_shape: shapeOf([rows]),
        float_val: answers.map((a) => (a as { value: number }).value),
      };
    return tensors;
  }
  const k = records.outputs.classes.length;
  const rowsOf = answers as { scores: number[]; class: string }[];
  if (keep('scores'))
    tensors.scores = {
      dtype: 'DT_FLOAT',
      tensor_shape: shapeOf([rows, k]),
      float_val: rowsOf.flatMap((a) => a.scores),
    };
  if (keep('class'))
    tensors.class = {
      dtype: 'DT_STRING',
      tensor_shape: shapeOf([rows]),
      string_val: rowsOf.map((a) => Buffer.from(a.class, 'utf8')),
    };
  return tensors;
}
