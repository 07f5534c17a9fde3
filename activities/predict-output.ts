import type { Servable } from '../serving/loader';
import type { DenseTensor } from '../serving/tensors';
import type { PredictFormat } from '../workflows/batch-predict-api';

/**
 * How a batch prediction writes its rows. JSON Lines: one object per predicted input row,
 * `{"row":<input row index>,"predictions":[…],"class":"<name>","version":<n>}` (no `class` for a regression). CSV:
 * the same fields as columns, `predictions` spread over one column per output value (`predictions_0`, …) after a
 * header row. Numbers are float32 in nine significant digits (formatFloat32): they read back as the same float32,
 * and the same output is the same bytes on every run. Parquet: the same columns as CSV, assembled from JSON Lines
 * parts (activities/predict-parquet.ts).
 */

export interface OutputLayout {
  /** Values per row of the model's output. */
  width: number;
  /** A classifier's class names (the preprocessing's, gantry.json's, or the column indexes); null otherwise. */
  classes: string[] | null;
}

export function outputLayoutOf(servable: Servable): OutputLayout {
  const { signature } = servable;
  const output = signature.outputs[0];
  if (signature.outputs.length !== 1 || !output || output.dtype !== 'float32') {
    const outputs = signature.outputs.map((s) => `${s.key} ${s.dtype} [${s.shape.join(', ')}]`);
    throw new Error(`the model's outputs are ${outputs.join('; ')}; batch prediction writes one float32 output`);
  }
  const width = output.shape.slice(1).reduce((a, b) => a * b, 1);
  const declared = signature.records?.outputs ?? signature.images?.outputs;
  if (declared?.task === 'regression') return { width, classes: null };
  const classes = declared?.classes ?? signature.classLabels ?? null;
  return { width, classes: classes && classes.length === width ? classes : null };
}

/**
 * A float32 as text: nine significant digits (always enough to read back the same float32) with trailing zeros
 * dropped. Not the shortest such text, which takes a search ten times slower than the model's own forward pass.
 */
export function formatFloat32(value: number): string {
  if (!Number.isFinite(value)) return 'null';
  if (value === 0) return '0';
  const text = value.toPrecision(9);
  const e = text.indexOf('e');
  let mantissa = e < 0 ? text : text.slice(0, e);
  if (mantissa.includes('.')) {
    let end = mantissa.length;
    while (mantissa.charCodeAt(end - 1) === 0x30) end--;
    if (mantissa.charCodeAt(end - 1) === 0x2e) end--;
    mantissa = mantissa.slice(0, end);
  }
  return e < 0 ? mantissa : mantissa + text.slice(e);
}

function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function csvHeader(layout: OutputLayout): string {
  const predictions = Array.from({ length: layout.width }, (_, i) => `predictions_${i}`);
  return `${['row', ...predictions, ...(layout.classes ? ['class'] : []), 'version'].join(',')}\n`;
}

/** The text of predicted rows `rows` (input row indexes) from the model's output for them. */
export function formatPredictions(
  format: Exclude<PredictFormat, 'parquet'>,
  layout: OutputLayout,
  version: number,
  rows: readonly number[],
  output: DenseTensor,
): string {
  const { width, classes } = layout;
  const data = output.data;
  let text = '';
  for (let r = 0; r < rows.length; r++) {
    const values: string[] = new Array(width);
    let best = 0;
    for (let c = 0; c < width; c++) {
      const v = data[r * width + c]!;
      values[c] = formatFloat32(v);
      if (v > data[r * width + best]!) best = c;
    }
    if (format === 'jsonl') {
      const cls = classes ? `,"class":${JSON.stringify(classes[best])}` : '';
      text += `{"row":${rows[r]},"predictions":[${values.join(',')}]${cls},"version":${version}}\n`;
    } else {
      const cls = classes ? `,${csvCell(classes[best]!)}` : '';
      text += `${rows[r]},${values.join(',')}${cls},${version}\n`;
    }
  }
  return text;
}
