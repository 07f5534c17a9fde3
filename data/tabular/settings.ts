import { z } from 'zod';
import { MissingPolicySchema } from '../preprocessing';

/**
 * How a tabular source is read into a dataset: the pipeline spec's `data` fields for tabular sources, as ingest
 * takes them (pipelines/spec.ts checks the spec; this is the ingest boundary's own check).
 */
export const ColumnSettingSchema = z
  .object({
    type: z.enum(['numeric', 'categorical', 'boolean', 'ignore']).optional(),
    missing: MissingPolicySchema.optional(),
  })
  .strict();
export type ColumnSetting = z.infer<typeof ColumnSettingSchema>;

export const TabularSettingsSchema = z.object({
  /** The column to predict. */
  label: z.string().min(1),
  /** Inferred from the label when left out: numeric → regression, otherwise classification. */
  task: z.enum(['classification', 'regression']).optional(),
  columns: z.record(z.string(), ColumnSettingSchema).default({}),
  missing: MissingPolicySchema.default('impute'),
  onMalformed: z.enum(['fail', 'skip']).default('fail'),
  onAnomaly: z.enum(['fail', 'warn']).default('fail'),
  testFraction: z.number().gt(0).lt(1).default(0.2),
});
export type TabularSettings = z.infer<typeof TabularSettingsSchema>;

/** Category values counted per column; past this the column's domain is marked incomplete (an id, free text). */
export const MAX_TRACKED_CATEGORIES = 10_000;
/** One-hot slots per categorical column: the training split's most frequent values; the rest go out of vocabulary. */
export const MAX_VOCABULARY = 1000;
/** A classification label has one byte per row in the shards. */
export const MAX_CLASSES = 256;
