import { DatasetError } from '../errors';
import { featureSizeOf, type PreprocessingColumn, type TabularPreprocessing } from '../preprocessing';
import { MAX_TOP_VALUES, type DatasetStatistics, type FeatureStatistics } from '../statistics';
import type { ColumnAccumulator } from './accumulator';
import type { SplitScan } from './scan';
import type { TabularSchema } from './schema';
import { MAX_VOCABULARY, type TabularSettings } from './settings';

/** Below this a numeric column is treated as constant: scaling by its std would blow rounding noise up. */
const MIN_STD = 1e-9;

/**
 * The encoding every row gets (data/preprocessing.ts), from the training split only, so validation and test
 * rows are encoded the way serving will encode unseen records: numeric mean/std, categorical vocabularies (most
 * frequent first, at most MAX_VOCABULARY, the rest out of vocabulary), the fill of each missing policy.
 */
export function buildPreprocessing(
  schema: TabularSchema,
  train: SplitScan,
  settings: TabularSettings,
  notes: string[] = [],
): TabularPreprocessing {
  const columns: PreprocessingColumn[] = [];
  for (const column of schema.columns) {
    if (column.type === 'ignore') continue;
    const stats = train.columns.get(column.name);
    if (!stats) throw new RangeError(`no training statistics for column ${column.name}`);
    const missing = settings.columns[column.name]?.missing ?? settings.missing;
    switch (column.type) {
      case 'numeric': {
        const mean = stats.numeric > 0 ? stats.mean : 0;
        columns.push({
          name: column.name,
          kind: 'numeric',
          missing,
          mean,
          std: stats.std > MIN_STD ? stats.std : 1,
          fill: mean,
        });
        break;
      }
      case 'boolean':
        columns.push({ name: column.name, kind: 'boolean', missing, fill: stats.trues * 2 >= stats.present ? 1 : 0 });
        break;
      case 'categorical': {
        const ranked = stats.ranked();
        if (ranked.length > MAX_VOCABULARY) {
          notes.push(
            `column ${JSON.stringify(column.name)}: ${ranked.length} values in the training split; the ` +
              `${MAX_VOCABULARY} most frequent get a slot, the rest share the out-of-vocabulary slot`,
          );
        }
        const vocabulary = ranked.slice(0, MAX_VOCABULARY).map(([value]) => value);
        columns.push({ name: column.name, kind: 'categorical', missing, vocabulary, fill: vocabulary[0] ?? '' });
        break;
      }
    }
  }
  if (columns.length === 0) throw new DatasetError('data.columns', 'no feature columns to encode');
  const label =
    schema.label.task === 'classification'
      ? { name: schema.label.name, task: 'classification' as const, classes: schema.label.classes ?? [] }
      : { name: schema.label.name, task: 'regression' as const };
  return { kind: 'tabular', formatVersion: 1, columns, featureSize: featureSizeOf(columns), label };
}

function featureStatistics(
  name: string,
  type: 'numeric' | 'categorical' | 'boolean',
  stats: ColumnAccumulator,
): FeatureStatistics {
  const counts = { name, count: stats.count, missing: stats.missing };
  if (type === 'numeric') {
    const any = stats.numeric > 0;
    return {
      ...counts,
      kind: 'numeric',
      mean: any ? stats.mean : 0,
      std: stats.std,
      min: any ? stats.min : 0,
      max: any ? stats.max : 0,
    };
  }
  if (type === 'boolean') {
    const falses = stats.present - stats.trues;
    const top = [
      { value: 'true', count: stats.trues },
      { value: 'false', count: falses },
    ].sort((a, b) => b.count - a.count);
    return { ...counts, kind: 'boolean', distinct: top.filter((t) => t.count > 0).length, top };
  }
  const ranked = stats.ranked();
  return {
    ...counts,
    kind: 'categorical',
    distinct: ranked.length,
    top: ranked.slice(0, MAX_TOP_VALUES).map(([value, count]) => ({ value, count })),
  };
}

/**
 * One split's DatasetStatistics: the label histogram (one bin for a regression, whose values are summarised in
 * labelSummary) and every feature column's statistics.
 */
export function splitStatistics(schema: TabularSchema, split: SplitScan): DatasetStatistics {
  const count = split.rows;
  let labelHistogram: number[];
  let labelSummary: DatasetStatistics['labelSummary'];
  if (schema.label.task === 'classification') {
    const classes = schema.label.classes ?? [];
    labelHistogram = classes.map((name) => split.label.categories.get(name) ?? 0);
  } else {
    labelHistogram = [count];
    if (split.label.numeric > 0) {
      labelSummary = { mean: split.label.mean, std: split.label.std, min: split.label.min, max: split.label.max };
    }
  }
  const features = schema.columns.flatMap((column) => {
    const stats = split.columns.get(column.name);
    return column.type === 'ignore' || !stats ? [] : [featureStatistics(column.name, column.type, stats)];
  });
  return {
    count,
    labelHistogram,
    labelDistribution: labelHistogram.map((n) => (count > 0 ? n / count : 0)),
    features,
    ...(labelSummary ? { labelSummary } : {}),
  };
}
