import { z } from 'zod';

/**
 * The transform from a raw record (as the source holds it, with the source's own column names) to
 * the model's input vector. Computed on the training split at ingest, stored with the dataset,
 * copied into every published version (`preprocessing.json`) and applied by the model server, so a
 * client sends raw records and training and serving cannot disagree about the encoding.
 *
 * The vector is the columns in order: a numeric column is one slot, (x − mean) / std; a boolean one
 * slot, 0 or 1; a categorical column one slot per vocabulary entry plus one out-of-vocabulary slot
 * (one-hot). Pure code: no TensorFlow, no I/O.
 */

/** What a missing value (null, undefined, empty string, NaN) in a column does, at ingest and at serving. */
export const MissingPolicySchema = z.enum(['impute', 'drop', 'fail']);
export type MissingPolicy = z.infer<typeof MissingPolicySchema>;

const NumericColumnSchema = z.object({
  name: z.string().min(1),
  kind: z.literal('numeric'),
  missing: MissingPolicySchema,
  /** Of the training split; `fill` is what an imputed value becomes (the training mean). */
  mean: z.number(),
  std: z.number().positive(),
  fill: z.number(),
});

const BooleanColumnSchema = z.object({
  name: z.string().min(1),
  kind: z.literal('boolean'),
  missing: MissingPolicySchema,
  /** 0 or 1: the training split's more frequent value. */
  fill: z.union([z.literal(0), z.literal(1)]),
});

const CategoricalColumnSchema = z.object({
  name: z.string().min(1),
  kind: z.literal('categorical'),
  missing: MissingPolicySchema,
  /** The training split's values, most frequent first; anything else goes to the out-of-vocabulary slot. */
  vocabulary: z.array(z.string()).max(100_000),
  /** The training split's most frequent value. */
  fill: z.string(),
});

export const PreprocessingColumnSchema = z.discriminatedUnion('kind', [
  NumericColumnSchema,
  BooleanColumnSchema,
  CategoricalColumnSchema,
]);
export type PreprocessingColumn = z.infer<typeof PreprocessingColumnSchema>;

export const LabelSchema = z.discriminatedUnion('task', [
  z.object({ name: z.string().min(1), task: z.literal('classification'), classes: z.array(z.string()).min(2) }),
  z.object({ name: z.string().min(1), task: z.literal('regression') }),
]);
export type Label = z.infer<typeof LabelSchema>;

export const TabularPreprocessingSchema = z.object({
  kind: z.literal('tabular'),
  formatVersion: z.literal(1),
  columns: z.array(PreprocessingColumnSchema).min(1).max(10_000),
  /** Slots of the encoded vector: the model's input shape is [featureSize]. */
  featureSize: z.number().int().positive(),
  label: LabelSchema,
});
export type TabularPreprocessing = z.infer<typeof TabularPreprocessingSchema>;

/** Images: the shape the model takes and the classes it names; the server decodes and resizes PNG/JPEG files to it. */
export const ImagePreprocessingSchema = z.object({
  kind: z.literal('image'),
  formatVersion: z.literal(1),
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  channels: z.union([z.literal(1), z.literal(3)]),
  label: LabelSchema,
});
export type ImagePreprocessing = z.infer<typeof ImagePreprocessingSchema>;

export const PreprocessingSchema = z.discriminatedUnion('kind', [TabularPreprocessingSchema, ImagePreprocessingSchema]);
export type Preprocessing = z.infer<typeof PreprocessingSchema>;

/** The file name in a dataset's folder and in a published version's folder. */
export const PREPROCESSING_FILE = 'preprocessing.json';

/** A record that cannot be encoded: names the column so a 400 (or an ingest report) can say which. */
export class RecordError extends Error {
  constructor(
    readonly column: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(column)}: ${reason}`);
    this.name = 'RecordError';
  }
}

/** Slots one column takes in the encoded vector. */
export function slotsOf(column: PreprocessingColumn): number {
  return column.kind === 'categorical' ? column.vocabulary.length + 1 : 1;
}

export function featureSizeOf(columns: readonly PreprocessingColumn[]): number {
  return columns.reduce((sum, column) => sum + slotsOf(column), 0);
}

export function isMissing(value: unknown): boolean {
  return (
    value === null ||
    value === undefined ||
    (typeof value === 'string' && isBlank(value)) ||
    (typeof value === 'number' && Number.isNaN(value))
  );
}

/** Empty or whitespace only; a printable ASCII first character (most cells) settles it without trimming. */
function isBlank(text: string): boolean {
  if (text.length === 0) return true;
  const first = text.charCodeAt(0);
  return !(first > 0x20 && first < 0x7f) && text.trim() === '';
}

const POWERS_OF_TEN = Array.from({ length: 16 }, (_, i) => 10 ** i);

/**
 * Number(text) for a plain decimal such as "-39.1" or "3750", read without Number()'s general parser (ingest reads
 * every cell of a CSV this way): with at most 15 digits the digits and the power of ten are exact doubles, so one
 * division rounds exactly as Number() does. Undefined for anything else (exponents, signs, spaces, words).
 */
function plainDecimal(text: string): number | undefined {
  const n = text.length;
  if (n === 0 || n > 17) return undefined;
  let i = text.charCodeAt(0) === 0x2d ? 1 : 0;
  const negative = i === 1;
  let digits = 0;
  let decimals = -1;
  let mantissa = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      mantissa = mantissa * 10 + (c - 0x30);
      digits += 1;
      if (decimals >= 0) decimals += 1;
    } else if (c === 0x2e && decimals < 0) decimals = 0;
    else return undefined;
  }
  if (digits === 0 || digits > 15) return undefined;
  const value = decimals > 0 ? mantissa / POWERS_OF_TEN[decimals]! : mantissa;
  return negative ? -value : value;
}

/** A number from a JSON number or a numeric string; undefined when it is neither. */
export function parseNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string') {
    const plain = plainDecimal(value);
    if (plain !== undefined) return plain;
    // Number() skips the same surrounding whitespace as trim() (ingest calls this per cell: no trimmed copy); only
    // a blank string, which Number() reads as 0, is not a number.
    const n = Number(value);
    if (n === 0 && isBlank(value)) return undefined;
    return Number.isFinite(n) ? n : undefined;
  }
  if (typeof value === 'bigint') return Number(value);
  return undefined;
}

const TRUE = new Set(['true', '1', 'yes', 'y', 't']);
const FALSE = new Set(['false', '0', 'no', 'n', 'f']);

export function parseBoolean(value: unknown): 0 | 1 | undefined {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value === 0 || value === 1) return value;
  if (typeof value === 'string') {
    const text = value.trim().toLowerCase();
    if (TRUE.has(text)) return 1;
    if (FALSE.has(text)) return 0;
  }
  return undefined;
}

/** A categorical value as its vocabulary spells it: numbers and booleans become their text. */
export function categoryOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return undefined;
}

export interface EncodeOutcome {
  /** False when a missing value under the `drop` policy means the record has no encoding. */
  kept: boolean;
  /** Categorical columns whose value was not in the vocabulary (encoded in the out-of-vocabulary slot). */
  outOfVocabulary: string[];
  /** Columns whose missing value was imputed. */
  imputed: string[];
}

/** Vocabulary index lookups, built once per preprocessing (Map, so a value never reaches the prototype chain). */
export class RecordEncoder {
  private readonly indexes: (Map<string, number> | undefined)[];
  readonly featureSize: number;

  constructor(readonly preprocessing: TabularPreprocessing) {
    this.indexes = preprocessing.columns.map((column) =>
      column.kind === 'categorical' ? new Map(column.vocabulary.map((value, i) => [value, i])) : undefined,
    );
    this.featureSize = featureSizeOf(preprocessing.columns);
    if (this.featureSize !== preprocessing.featureSize) {
      throw new RangeError(
        `preprocessing says ${preprocessing.featureSize} slots, its columns make ${this.featureSize}`,
      );
    }
  }

  /**
   * Encodes `get(column)` for every column into `out` at `offset` (featureSize slots, zeroed here).
   * Throws RecordError for a value of the wrong type or a missing value under `fail`.
   */
  encode(get: (column: string) => unknown, out: Float32Array, offset = 0): EncodeOutcome {
    const outcome: EncodeOutcome = { kept: true, outOfVocabulary: [], imputed: [] };
    out.fill(0, offset, offset + this.featureSize);
    let slot = offset;
    this.preprocessing.columns.forEach((column, c) => {
      let value = get(column.name);
      if (isMissing(value)) {
        if (column.missing === 'fail') throw new RecordError(column.name, 'is missing');
        if (column.missing === 'drop') outcome.kept = false;
        outcome.imputed.push(column.name);
        value = column.fill;
      }
      switch (column.kind) {
        case 'numeric': {
          const n = parseNumber(value);
          if (n === undefined) throw new RecordError(column.name, `expected a number, got ${describe(value)}`);
          out[slot] = (n - column.mean) / column.std;
          slot += 1;
          break;
        }
        case 'boolean': {
          const b = parseBoolean(value);
          if (b === undefined) throw new RecordError(column.name, `expected a boolean, got ${describe(value)}`);
          out[slot] = b;
          slot += 1;
          break;
        }
        case 'categorical': {
          const category = categoryOf(value);
          if (category === undefined) throw new RecordError(column.name, `expected a category, got ${describe(value)}`);
          const index = this.indexes[c]!.get(category);
          if (index === undefined) outcome.outOfVocabulary.push(column.name);
          out[slot + (index ?? column.vocabulary.length)] = 1;
          slot += column.vocabulary.length + 1;
          break;
        }
      }
    });
    return outcome;
  }
}

/** A short, bounded description of a bad value for an error message. */
export function describe(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/**
 * Tensor names. Over gRPC each column is a named tensor, and in a model with several inputs each categorical column
 * is an input layer: a name must match TENSOR_NAME. A column whose name does not is spelled by `tensorNameOf` (lower
 * case, every run of other characters → `_`, `_` trimmed at both ends: `Beak Length (mm)` → `beak_length_mm`).
 */
export const TENSOR_NAME = /^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$/;

/** A column's tensor name: itself when it is a valid one, else the documented respelling. */
export function tensorNameOf(column: string): string {
  if (TENSOR_NAME.test(column)) return column;
  return column
    .toLowerCase()
    .replace(/[^a-z0-9_.\-/]+/g, '_')
    .replace(/^[^a-z0-9.]+/, '')
    .replace(/_+$/, '');
}

/**
 * The tensor names of a table's columns: `tensorNameOf` each, `column_<i>` where nothing is left,
 * and `_<i>` appended (i: the column's index) where the spelling is another column's.
 */
export function tensorNamesOf(columns: readonly string[]): string[] {
  const taken = new Set(columns);
  return columns.map((name, i) => {
    let spelled = tensorNameOf(name) || `column_${i}`;
    if (spelled === name) return name;
    if (taken.has(spelled)) spelled = `${spelled}_${i}`;
    taken.add(spelled);
    return spelled;
  });
}

/**
 * Models with several inputs. The encoded vector above is the input of a one-input model. A model with several
 * inputs instead takes Gantry's named inputs, split from that vector (so ingest, shards and the server's encoder stay
 * one format):
 * - `numeric` (NUMERIC_INPUT): every numeric and boolean slot, in column order, float32 [k];
 * - one input per categorical column, named by the column's tensor name (tensorNamesOf over all columns), holding
 *   the category's index in the vocabulary as float32 [1]; the out-of-vocabulary value is vocabulary.length, so an
 *   Embedding with inputDim vocabulary.length + 1 takes every index.
 * A model may leave inputs out (a column it ignores); an input name outside this list is refused.
 */
export const NUMERIC_INPUT = 'numeric';

export interface NamedInput {
  /** The input's name (the model's input layer's name). */
  name: string;
  /** Values per example: k for `numeric`, 1 for a categorical column. */
  width: number;
  /** Categorical inputs: the source's column name and the index range [0, vocabularySize). */
  column?: string;
  vocabularySize?: number;
}

/** Where each named input's values sit in the encoded vector. */
export interface TabularInputLayout {
  featureSize: number;
  inputs: NamedInput[];
  /** The encoded slots of NUMERIC_INPUT, in order (empty when the data has no numeric or boolean column). */
  numericSlots: number[];
  /** Per categorical input (in `inputs` order after `numeric`): its first one-hot slot. */
  categoricalOffsets: number[];
}

export function tabularInputsOf(preprocessing: TabularPreprocessing): TabularInputLayout {
  const names = tensorNamesOf(preprocessing.columns.map((c) => c.name));
  const numericSlots: number[] = [];
  const categorical: NamedInput[] = [];
  const categoricalOffsets: number[] = [];
  let slot = 0;
  preprocessing.columns.forEach((column, i) => {
    if (column.kind === 'categorical') {
      if (names[i] === NUMERIC_INPUT)
        throw new Error(
          `column ${JSON.stringify(column.name)}: its tensor name is "${NUMERIC_INPUT}", the name of the numeric ` +
            'input of a model with several inputs; rename the column',
        );
      const vocabularySize = column.vocabulary.length + 1;
      categorical.push({ name: names[i]!, width: 1, column: column.name, vocabularySize });
      categoricalOffsets.push(slot);
    } else numericSlots.push(slot);
    slot += slotsOf(column);
  });
  const numeric = numericSlots.length ? [{ name: NUMERIC_INPUT, width: numericSlots.length }] : [];
  return { featureSize: slot, inputs: [...numeric, ...categorical], numericSlots, categoricalOffsets };
}

/**
 * Splits `rows` encoded vectors (featureSize values each) into the named inputs, each rows × width values: the
 * numeric slots gathered, each categorical one-hot turned into the index of its hot slot.
 */
export function splitEncoded(
  layout: TabularInputLayout,
  encoded: ArrayLike<number>,
  rows: number,
): Map<string, Float32Array> {
  const size = layout.featureSize;
  if (encoded.length < rows * size)
    throw new RangeError(`${encoded.length} encoded values are fewer than ${rows} rows of ${size}`);
  const out = new Map<string, Float32Array>();
  const { numericSlots, categoricalOffsets } = layout;
  if (numericSlots.length) {
    const k = numericSlots.length;
    const numeric = new Float32Array(rows * k);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < k; j++) numeric[r * k + j] = encoded[r * size + numericSlots[j]!]!;
    out.set(NUMERIC_INPUT, numeric);
  }
  const categorical = layout.inputs.filter((input) => input.column !== undefined);
  categorical.forEach((input, c) => {
    const offset = categoricalOffsets[c]!;
    const slots = input.vocabularySize!;
    const indexes = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      // The hot slot; a row with none (never written by RecordEncoder) reads as out of vocabulary.
      let hot = slots - 1;
      for (let s = 0; s < slots; s++)
        if (encoded[r * size + offset + s]! > 0.5) {
          hot = s;
          break;
        }
      indexes[r] = hot;
    }
    out.set(input.name, indexes);
  });
  return out;
}
