import { z } from 'zod';
import { DatasetError } from '../errors';
import type { Anomaly } from '../ingest';
import { SPLIT_NAMES } from '../split';
import { ColumnAccumulator } from './accumulator';
import type { ScanResult } from './scan';
import { MAX_CLASSES, MAX_TRACKED_CATEGORIES, type TabularSettings } from './settings';

/**
 * A tabular source's schema: each column's type and domain (range of a numeric column, values of a categorical
 * one, whether it had missing values) and the label's. The first run infers it and stores it; later runs infer
 * theirs and report every difference as an anomaly (TFX's SchemaGen / ExampleValidator split).
 */
export const SchemaColumnSchema = z.object({
  name: z.string(),
  type: z.enum(['numeric', 'categorical', 'boolean', 'ignore']),
  /** The spec declared the type (data.columns) rather than the data suggesting it. */
  declared: z.boolean(),
  hasMissing: z.boolean(),
  min: z.number().nullable(),
  max: z.number().nullable(),
  /** Every value seen (categorical), sorted; null when there were more than Gantry counts. */
  categories: z.array(z.string()).max(MAX_TRACKED_CATEGORIES).nullable(),
});
export type SchemaColumn = z.infer<typeof SchemaColumnSchema>;

export const TabularSchemaSchema = z.object({
  kind: z.literal('tabular'),
  formatVersion: z.literal(1),
  label: z.object({
    name: z.string(),
    task: z.enum(['classification', 'regression']),
    /** Classification: the classes, sorted (numerically when they are all numbers). */
    classes: z.array(z.string()).max(MAX_CLASSES).nullable(),
    min: z.number().nullable(),
    max: z.number().nullable(),
  }),
  columns: z.array(SchemaColumnSchema).max(10_000),
});
export type TabularSchema = z.infer<typeof TabularSchemaSchema>;

/** All splits of one column (or of the label) merged. */
function mergedColumn(scan: ScanResult, name: string | null): ColumnAccumulator {
  const merged = new ColumnAccumulator();
  for (const split of SPLIT_NAMES) {
    const part = name === null ? scan.splits[split].label : scan.splits[split].columns.get(name);
    if (part) merged.merge(part);
  }
  return merged;
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

function sortedValues(values: string[]): string[] {
  const numbers = values.map(Number);
  if (values.every((v, i) => v.trim() !== '' && Number.isFinite(numbers[i]))) {
    return [...values].sort((a, b) => Number(a) - Number(b));
  }
  return [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Decides each column's type from pass 1 (the spec's data.columns first; otherwise every present value a boolean
 * word → boolean, every one a number → numeric, else categorical; a column with no value at all is ignored) and the
 * task from the label (data.task, else numeric → regression). `notes` collects what the user should hear about.
 */
export function inferSchema(scan: ScanResult, settings: TabularSettings, notes: string[] = []): TabularSchema {
  const labelName = settings.label;
  if (!scan.labelSeen) {
    throw new DatasetError(
      'data.label',
      `column ${JSON.stringify(labelName)} is not in the source (columns: ${scan.columnOrder.join(', ') || 'none'})`,
    );
  }
  const unknown = Object.keys(settings.columns).filter(
    (name) => name !== labelName && !scan.columnOrder.includes(name),
  );
  if (unknown.length > 0) {
    throw new DatasetError(
      'data.columns',
      `names ${unknown.map((n) => JSON.stringify(n)).join(', ')}, not in the source ` +
        `(columns: ${scan.columnOrder.join(', ')})`,
    );
  }
  const rows = SPLIT_NAMES.reduce((sum, split) => sum + scan.splits[split].rows, 0);
  const columns = scan.columnOrder.map((name): SchemaColumn => {
    const declared = settings.columns[name]?.type;
    if (declared === 'ignore') {
      return { name, type: 'ignore', declared: true, hasMissing: false, min: null, max: null, categories: null };
    }
    const all = mergedColumn(scan, name);
    let type: SchemaColumn['type'] = declared ?? 'categorical';
    if (!declared) {
      if (all.present === 0) {
        type = 'ignore';
        notes.push(`column ${JSON.stringify(name)} has no values: ignored`);
      } else if (all.notBoolean === 0) type = 'boolean';
      else if (all.notNumeric === 0) type = 'numeric';
      else if (all.categories.size > 100 && all.categories.size > 0.5 * all.present) {
        notes.push(
          `column ${JSON.stringify(name)} has ${all.categories.size}${all.truncated ? '+' : ''} distinct values in ` +
            `${all.present} rows, like an identifier; consider data.columns[${JSON.stringify(name)}] = ` +
            `{ type: 'ignore' }`,
        );
      }
    }
    return {
      name,
      type,
      declared: declared !== undefined,
      hasMissing: all.missing > 0,
      min: type === 'numeric' ? finite(all.min) : null,
      max: type === 'numeric' ? finite(all.max) : null,
      categories: type === 'categorical' && !all.truncated ? sortedValues([...all.categories.keys()]) : null,
    };
  });
  if (!columns.some((column) => column.type !== 'ignore')) {
    throw new DatasetError('data.columns', `no feature column besides the label ${JSON.stringify(labelName)}`);
  }

  const label = mergedColumn(scan, null);
  const task = settings.task ?? (label.notBoolean > 0 && label.notNumeric === 0 ? 'regression' : 'classification');
  let classes: string[] | null = null;
  if (task === 'classification') {
    if (label.truncated || label.categories.size > MAX_CLASSES) {
      throw new DatasetError(
        'data.label',
        `${JSON.stringify(labelName)} has more than ${MAX_CLASSES} distinct values, too many classes ` +
          "(set data.task: 'regression' if it is a quantity)",
      );
    }
    classes = sortedValues([...label.categories.keys()]);
    if (rows > 0 && classes.length < 2) {
      throw new DatasetError('data.label', `${JSON.stringify(labelName)} has one class only (${classes.join('')})`);
    }
  }
  return {
    kind: 'tabular',
    formatVersion: 1,
    label: {
      name: labelName,
      task,
      classes,
      min: task === 'regression' ? finite(label.min) : null,
      max: task === 'regression' ? finite(label.max) : null,
    },
    columns,
  };
}

const MAX_LISTED = 5;

function listed(values: string[]): string {
  const shown = values.slice(0, MAX_LISTED).map((v) => JSON.stringify(v));
  return values.length > MAX_LISTED ? `${shown.join(', ')} and ${values.length - MAX_LISTED} more` : shown.join(', ');
}

/** Every difference of this run's schema from the stored one: what ExampleValidator would flag. */
export function schemaAnomalies(stored: TabularSchema, current: TabularSchema): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const now = new Map(current.columns.map((column) => [column.name, column]));
  const before = new Map(stored.columns.map((column) => [column.name, column]));
  if (stored.label.name !== current.label.name) {
    anomalies.push({
      kind: 'missing-column',
      column: stored.label.name,
      message: `the label was ${JSON.stringify(stored.label.name)}, now ${JSON.stringify(current.label.name)}`,
    });
  }
  if (stored.label.task !== current.label.task) {
    anomalies.push({
      kind: 'type-change',
      column: current.label.name,
      message: `the task was ${stored.label.task}, now ${current.label.task}`,
    });
  } else if (stored.label.classes && current.label.classes) {
    const known = new Set(stored.label.classes);
    const added = current.label.classes.filter((c) => !known.has(c));
    if (added.length > 0) {
      anomalies.push({
        kind: 'new-category',
        column: current.label.name,
        message: `new classes ${listed(added)} (the schema has ${listed(stored.label.classes)})`,
      });
    }
  } else {
    anomalies.push(...rangeAnomalies(current.label.name, stored.label, current.label));
  }
  for (const old of stored.columns) {
    if (old.type !== 'ignore' && !now.has(old.name)) {
      anomalies.push({ kind: 'missing-column', column: old.name, message: 'is in the schema but not in the data' });
    }
  }
  for (const column of current.columns) {
    const old = before.get(column.name);
    if (!old) {
      if (column.type !== 'ignore') {
        anomalies.push({ kind: 'new-column', column: column.name, message: `is not in the schema (${column.type})` });
      }
      continue;
    }
    if (old.type === 'ignore' || column.type === 'ignore') continue;
    if (old.type !== column.type) {
      anomalies.push({
        kind: 'type-change',
        column: column.name,
        message: `was ${old.type} in the schema, is ${column.type} now`,
      });
      continue;
    }
    if (column.hasMissing && !old.hasMissing) {
      anomalies.push({
        kind: 'missing-values',
        column: column.name,
        message: 'has missing values; the schema had none',
      });
    }
    if (column.type === 'numeric') anomalies.push(...rangeAnomalies(column.name, old, column));
    if (column.type === 'categorical' && old.categories && column.categories) {
      const known = new Set(old.categories);
      const added = column.categories.filter((c) => !known.has(c));
      if (added.length > 0) {
        anomalies.push({ kind: 'new-category', column: column.name, message: `new values ${listed(added)}` });
      }
    }
  }
  return anomalies;
}

function rangeAnomalies(
  name: string,
  old: { min: number | null; max: number | null },
  now: { min: number | null; max: number | null },
): Anomaly[] {
  if (old.min === null || old.max === null || now.min === null || now.max === null) return [];
  if (now.min >= old.min && now.max <= old.max) return [];
  return [
    {
      kind: 'out-of-range',
      column: name,
      message: `values span [${now.min}, ${now.max}], outside the schema's [${old.min}, ${old.max}]`,
    },
  ];
}

/** The schema as a few lines for the progress log. */
export function describeSchema(schema: TabularSchema): string[] {
  const { label } = schema;
  const head =
    label.task === 'classification'
      ? `label ${JSON.stringify(label.name)}: classification, ${label.classes?.length} classes ` +
        `(${listed(label.classes ?? [])})`
      : `label ${JSON.stringify(label.name)}: regression, [${label.min}, ${label.max}]`;
  return [
    head,
    ...schema.columns.map((column) => {
      const missing = column.hasMissing ? ', has missing values' : '';
      const how = column.declared ? 'declared' : 'inferred';
      switch (column.type) {
        case 'numeric':
          return `  ${JSON.stringify(column.name)}: numeric (${how}) [${column.min}, ${column.max}]${missing}`;
        case 'categorical':
          return (
            `  ${JSON.stringify(column.name)}: categorical (${how}) ` +
            (column.categories ? `${column.categories.length} values: ${listed(column.categories)}` : 'many values') +
            missing
          );
        default:
          return `  ${JSON.stringify(column.name)}: ${column.type} (${how})${missing}`;
      }
    }),
  ];
}
