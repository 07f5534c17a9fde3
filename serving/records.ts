import {
  RecordEncoder,
  RecordError,
  slotsOf,
  splitEncoded,
  TENSOR_NAME,
  tabularInputsOf,
  tensorNameOf,
  tensorNamesOf,
  type Label,
  type PreprocessingColumn,
  type TabularInputLayout,
  type TabularPreprocessing,
} from '../data/preprocessing';
import { invalidArgument } from './errors';
import type { Signature } from './signature';
import { firstNonFinite, type DenseTensor } from './tensors';

/**
 * Raw records in, the model's encoded input out: a version published with a tabular
 * `preprocessing.json` takes records as the source holds them (its own column names, raw values)
 * and the server applies the training-time encoding (data/preprocessing.ts RecordEncoder) before
 * the model call, so training and serving cannot disagree about it.
 *
 * Column names travel as they are over REST. Over gRPC each column is a named tensor, and a
 * tensor name must match TENSOR_NAME; a column whose name does not is spelled by `tensorNameOf`
 * (lower case, every run of other characters → `_`, `_` trimmed at both ends: `Beak Length (mm)`
 * → `beak_length_mm`). Both spellings are accepted by both doors; metadata lists the tensor names.
 * A column a request leaves out is missing (its training-time policy applies); the label's column,
 * if a record carries it, is read past; any other name is refused. A model with several inputs
 * gets the encoded records split into its named inputs (data/preprocessing.ts NUMERIC_INPUT).
 */

export { TENSOR_NAME, tensorNameOf, tensorNamesOf };

export interface RecordColumn {
  /** The source's own name (what preprocessing.json and the REST body use). */
  name: string;
  kind: PreprocessingColumn['kind'];
  /** The gRPC / metadata spelling (equal to `name` when that is already a valid tensor name). */
  tensorName: string;
}

export type RecordOutputs = { task: 'classification'; classes: string[] } | { task: 'regression' };

/** What a version that takes raw records carries beside its signature (built once, at load). */
export interface RecordInputs {
  preprocessing: TabularPreprocessing;
  encoder: RecordEncoder;
  columns: RecordColumn[];
  outputs: RecordOutputs;
  /**
   * A model with several inputs (data/preprocessing.ts NUMERIC_INPUT): the encoded records are split into its named
   * inputs, in the signature's input order. Absent for the one-input model (the encoded vector itself).
   */
  split?: { layout: TabularInputLayout; order: string[] };
}

/**
 * Checks that `preprocessing` fits the model (one float32 input of [featureSize], an output per
 * class or one value) and builds the lookups; throws with a message the version's error shows.
 */
export function recordInputsOf(preprocessing: TabularPreprocessing, signature: Signature): RecordInputs {
  const encoder = new RecordEncoder(preprocessing);
  const input = signature.inputs.length === 1 ? signature.inputs[0]! : undefined;
  const split = signature.inputs.length > 1 ? splitOf(preprocessing, signature) : undefined;
  if (
    !split &&
    (!input || input.dtype !== 'float32' || input.shape.length !== 2 || input.shape[1] !== encoder.featureSize)
  )
    throw new Error(
      `a record encodes to ${encoder.featureSize} float32 values, but the model's inputs are ` +
        `${signature.inputs.map((s) => `${s.key} ${s.dtype} [${s.shape.join(', ')}]`).join('; ')}`,
    );
  const outputs = recordOutputsOf(preprocessing.label, signature);
  const names = tensorNamesOf(preprocessing.columns.map((c) => c.name));
  const columns = preprocessing.columns.map((c, i) => ({ name: c.name, kind: c.kind, tensorName: names[i]! }));
  return { preprocessing, encoder, columns, outputs, ...(split ? { split } : {}) };
}

/**
 * What a version answers a records (or images, serving/images.ts) request with, checked against the model's one
 * output: a score per class or one value; throws with a message the version's error shows.
 */
export function recordOutputsOf(label: Label, signature: Signature): RecordOutputs {
  const output = signature.outputs.length === 1 ? signature.outputs[0]! : undefined;
  const width = output && output.shape.length === 2 ? output.shape[1] : output?.shape.length === 1 ? 1 : undefined;
  const wanted = label.task === 'classification' ? label.classes.length : 1;
  if (width !== wanted)
    throw new Error(
      `the label is a ${label.task}${label.task === 'classification' ? ` of ${wanted} classes` : ''}, ` +
        `but the model's outputs are ${signature.outputs.map((s) => `${s.key} [${s.shape.join(', ')}]`).join('; ')}`,
    );
  return label.task === 'classification' ? { task: 'classification', classes: [...label.classes] } : label;
}

/** A several-input model's inputs, each checked against Gantry's named inputs (name, float32, [-1, width]). */
function splitOf(preprocessing: TabularPreprocessing, signature: Signature): RecordInputs['split'] {
  const layout = tabularInputsOf(preprocessing);
  const known = new Map(layout.inputs.map((i) => [i.name, i]));
  for (const spec of signature.inputs) {
    const named = known.get(spec.key);
    if (!named)
      throw new Error(
        `the model's input ${JSON.stringify(spec.key)} is none of the named inputs of a model with several inputs: ` +
          `${layout.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`,
      );
    if (spec.dtype !== 'float32' || spec.shape.length !== 2 || spec.shape[1] !== named.width)
      throw new Error(
        `the model's input ${JSON.stringify(spec.key)} is ${spec.dtype} [${spec.shape.join(', ')}]; ` +
          `it takes float32 [-1, ${named.width}]`,
      );
  }
  return { layout, order: signature.inputs.map((s) => s.key) };
}

/** Where a request names the label's column (a record as the data holds it): read past, never encoded. */
export const LABEL_COLUMN = -1;

/** The columns' index by either spelling; the label's column (either spelling) maps to LABEL_COLUMN. */
export function columnIndex(records: RecordInputs): Map<string, number> {
  const index = new Map<string, number>();
  const label = records.preprocessing.label.name;
  index.set(label, LABEL_COLUMN);
  index.set(tensorNameOf(label), LABEL_COLUMN);
  records.columns.forEach((c, i) => {
    index.set(c.name, i);
    index.set(c.tensorName, i);
  });
  return index;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Whether a REST predict body (`instances` or `inputs`) names record columns rather than the
 * signature's tensor inputs: an object whose keys are not all the signature's input keys. A
 * pre-encoded vector (`{"instances": [[…]]}` or `{"input": …}`) keeps the tensor path.
 */
export function isRecordRequest(value: unknown, signature: Signature): boolean {
  if (!signature.records) return false;
  const object = Array.isArray(value) ? value[0] : value;
  if (!isPlainObject(object) || 'b64' in object) return false;
  const keys = Object.keys(object);
  return keys.length === 0 || keys.some((k) => !signature.inputs.some((s) => s.key === k));
}

export interface EncodedRecords {
  inputs: DenseTensor[];
  rows: number;
  /** Records per column whose category was answered through the out-of-vocabulary slot. */
  outOfVocabulary: Map<string, number>;
}

/**
 * Encodes `rows` records, record r's value of column c being `value(r, c)` (c indexes
 * records.columns). `where(r)` names record r in errors (`instances[3]`).
 */
export function encodeRecords(
  records: RecordInputs,
  rows: number,
  value: (row: number, column: number) => unknown,
  where: (row: number) => string,
): EncodedRecords {
  const size = records.encoder.featureSize;
  const data = new Float32Array(rows * size);
  const outOfVocabulary = new Map<string, number>();
  const byName = new Map(records.columns.map((c, i) => [c.name, i]));
  const policies = new Map(records.preprocessing.columns.map((c) => [c.name, c.missing]));
  for (let r = 0; r < rows; r++) {
    let outcome: ReturnType<RecordEncoder['encode']>;
    try {
      outcome = records.encoder.encode((name) => value(r, byName.get(name)!), data, r * size);
    } catch (error) {
      if (error instanceof RecordError)
        throw invalidArgument(
          `${where(r)}: column ${JSON.stringify(error.column)} ${error.reason}` +
            (error.reason === 'is missing' ? ' (its missing-value policy is "fail")' : ''),
        );
      throw error;
    }
    if (!outcome.kept) {
      const dropped = outcome.imputed.filter((c) => policies.get(c) === 'drop');
      throw invalidArgument(
        `${where(r)}: column ${dropped.map((c) => JSON.stringify(c)).join(', ')} is missing and its ` +
          'missing-value policy is "drop": a dropped record has no prediction',
      );
    }
    for (const column of outcome.outOfVocabulary) outOfVocabulary.set(column, (outOfVocabulary.get(column) ?? 0) + 1);
    // A finite value far beyond the column's scale (1e39) normalizes past float32's range: refused, naming the column.
    const slot = firstNonFinite(data.subarray(r * size, (r + 1) * size));
    if (slot >= 0)
      throw invalidArgument(
        `${where(r)}: column ${JSON.stringify(columnAt(records.preprocessing.columns, slot))} encodes to ` +
          `${data[r * size + slot]}, outside the float32 range`,
      );
  }
  if (records.split) {
    const { layout, order } = records.split;
    const parts = splitEncoded(layout, data, rows);
    const widths = new Map(layout.inputs.map((i) => [i.name, i.width]));
    const inputs = order.map(
      (name): DenseTensor => ({
        dtype: 'float32',
        shape: [rows, widths.get(name)!],
        data: parts.get(name)!,
      }),
    );
    return { inputs, rows, outOfVocabulary };
  }
  return { inputs: [{ dtype: 'float32', shape: [rows, size], data }], rows, outOfVocabulary };
}

/** The column whose encoded slots hold `slot`. */
function columnAt(columns: readonly PreprocessingColumn[], slot: number): string {
  let end = 0;
  for (const column of columns) {
    end += slotsOf(column);
    if (slot < end) return column.name;
  }
  return '?';
}

function unknownColumns(keys: string[], records: RecordInputs, where: string): never {
  throw invalidArgument(
    `${where}: unknown column ${keys.map((k) => JSON.stringify(k)).join(', ')}; the model's columns are ` +
      `${records.columns.map((c) => JSON.stringify(c.name)).join(', ')}`,
  );
}

/** Each key of `object` as a column index; unknown keys and a column given twice (both spellings) refused. */
function columnsOf(object: Record<string, unknown>, records: RecordInputs, index: Map<string, number>, where: string) {
  const keys = Object.keys(object);
  const unknown = keys.filter((k) => !index.has(k));
  if (unknown.length) unknownColumns(unknown, records, where);
  const seen = new Set<number>();
  return keys.flatMap((key) => {
    const c = index.get(key)!;
    if (c === LABEL_COLUMN) return [];
    if (seen.has(c)) throw invalidArgument(`${where}: column ${JSON.stringify(records.columns[c]!.name)} given twice`);
    seen.add(c);
    return [[c, key] as const];
  });
}

/** The row format: `instances[r]` is one record, an object of columns (a column left out is missing). */
export function recordsFromInstances(instances: unknown[], records: RecordInputs, maxRows: number): EncodedRecords {
  const rows = instances.length;
  if (rows === 0) throw invalidArgument('instances: must hold at least one record');
  if (rows > maxRows) throw invalidArgument(`instances: ${rows} records exceed the limit of ${maxRows} per request`);
  const index = columnIndex(records);
  const width = records.columns.length;
  const values = new Array<unknown>(rows * width);
  instances.forEach((instance, r) => {
    if (!isPlainObject(instance))
      throw invalidArgument(`instances[${r}]: expected a record (an object of columns), got ${typeof instance}`);
    for (const [c, key] of columnsOf(instance, records, index, `instances[${r}]`))
      values[r * width + c] = instance[key];
  });
  return encodeRecords(
    records,
    rows,
    (r, c) => values[r * width + c],
    (r) => `instances[${r}]`,
  );
}

/** The columnar format: `inputs` maps columns to equally long arrays of values (a column left out is missing). */
export function recordsFromColumns(inputs: unknown, records: RecordInputs, maxRows: number): EncodedRecords {
  if (!isPlainObject(inputs)) throw invalidArgument('inputs: expected an object of columns');
  const index = columnIndex(records);
  const given = columnsOf(inputs, records, index, 'inputs');
  const arrays = new Array<unknown[] | undefined>(records.columns.length);
  let rows = -1;
  for (const [c, key] of given) {
    const array = inputs[key];
    const where = `inputs.${JSON.stringify(key)}`;
    if (!Array.isArray(array) || array.length === 0)
      throw invalidArgument(`${where}: expected a non-empty array of values, one per record`);
    if (array.length > maxRows)
      throw invalidArgument(`${where}: ${array.length} records exceed the limit of ${maxRows} per request`);
    if (rows !== -1 && array.length !== rows)
      throw invalidArgument(`${where}: ${array.length} values, the other columns have ${rows}`);
    rows = array.length;
    arrays[c] = array;
  }
  if (rows === -1) throw invalidArgument('inputs: names no column');
  return encodeRecords(
    records,
    rows,
    (r, c) => arrays[c]?.[r],
    (r) => `record ${r}`,
  );
}

/** Per-row answers of a records request: scores and the class's name, or the value. */
export type RecordAnswer = { scores: number[]; class: string } | { value: number };

export function recordAnswers(records: { outputs: RecordOutputs }, output: DenseTensor): RecordAnswer[] {
  const rows = output.shape[0] ?? 0;
  const answers = new Array<RecordAnswer>(rows);
  if (records.outputs.task === 'regression') {
    for (let r = 0; r < rows; r++) answers[r] = { value: output.data[r]! };
    return answers;
  }
  const classes = records.outputs.classes;
  const k = classes.length;
  for (let r = 0; r < rows; r++) {
    const scores = Array.from(output.data.subarray(r * k, (r + 1) * k));
    let best = 0;
    for (let c = 1; c < k; c++) if (scores[c]! > scores[best]!) best = c;
    answers[r] = { scores, class: classes[best]! };
  }
  return answers;
}

/** The names of a records request's outputs (REST keys, gRPC tensors, metadata). */
export function recordOutputNames(records: { outputs: RecordOutputs }): string[] {
  return records.outputs.task === 'classification' ? ['scores', 'class'] : ['value'];
}
