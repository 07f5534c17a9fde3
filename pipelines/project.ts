import type * as tfType from '@tensorflow/tfjs';
import type { z } from 'zod';
import { NUMERIC_INPUT, type Preprocessing, tabularInputsOf } from '../data/preprocessing';
import type { ArchitectureInput as TrainingArchitectureInput } from '../training/architectures';
import type { PipelineSpec, StepPoint } from './spec';

/**
 * What a user's project file (`gantry.config.ts`, `export default defineProject({...})`) registers:
 * its data sources, model architectures, steps and pipelines, and optionally a module of its own
 * Temporal workflows. The definitions hold code; a pipeline spec names them and stays plain data.
 * Workers started in the project load the file and register each definition (pipelines/load-project.ts).
 */

/**
 * What an architecture's builder is told about the data: training's ArchitectureInput with every field present
 * (Gantry's own builders also serve older callers that leave task and preprocessing out).
 */
export interface ArchitectureInput extends Required<TrainingArchitectureInput> {
  /** Shape of one example: [height, width, channels] for images, [featureSize] for tabular data. */
  featureShape: number[];
  task: 'classification' | 'regression';
  /** Classes of a classifier (its softmax width); 1 for a regression. */
  numClasses: number;
  seed: number;
  /** How raw records become the input vector (column slots, vocabularies), when the source is tabular. */
  preprocessing: Preprocessing | null;
}

/** A categorical column's input in a model with several inputs (see tabularInputs). */
export interface CategoricalInput {
  /** The source's column name. */
  column: string;
  /** The input's name: the column's tensor name (`Beak Length (mm)` → `beak_length_mm`). */
  name: string;
  /** Indexes 0 … vocabularySize − 1, the last one out of vocabulary: an Embedding's `inputDim`. */
  vocabularySize: number;
  /** float32 [batch, 1]: the category's index. */
  input: tfType.SymbolicTensor;
}

/** Gantry's named inputs of a tabular model with several inputs, made as tf.input()s. */
export interface TabularInputs {
  /** `numeric`, float32 [batch, k]: every numeric (normalised) and boolean column; absent when there is none. */
  numeric?: tfType.SymbolicTensor;
  categorical: CategoricalInput[];
  /** Every input, for `tf.model({ inputs: all, outputs })`. */
  all: tfType.SymbolicTensor[];
}

/**
 * The inputs of a model with several inputs over tabular data. Besides one input of the whole encoded vector
 * ([featureSize], categoricals one-hot), a model may take Gantry's named inputs, which training and the server split
 * from that vector: `numeric` (every numeric and boolean slot) and one input per categorical column, named by its
 * tensor name, holding the category's index as float32 [1] (out of vocabulary: the vocabulary's length), for an
 * Embedding of inputDim `vocabularySize`. A model may leave out a column's input; other input names are refused.
 *
 *   const { numeric, categorical, all } = tabularInputs(tf, input);
 *   const parts = [tf.layers.dense({ units: 16 }).apply(numeric!) as SymbolicTensor, ...categorical.map((c) =>
 *     tf.layers.flatten().apply(tf.layers.embedding({ inputDim: c.vocabularySize, outputDim: 2 }).apply(c.input)))];
 *   return tf.model({ inputs: all, outputs: head.apply(tf.layers.concatenate().apply(parts)) });
 */
export function tabularInputs(tf: typeof tfType, input: ArchitectureInput): TabularInputs {
  if (input.preprocessing?.kind !== 'tabular')
    throw new Error('tabularInputs: the data is not tabular (its preprocessing has no columns)');
  const layout = tabularInputsOf(input.preprocessing);
  const make = (name: string, width: number) => tf.input({ shape: [width], name, dtype: 'float32' });
  const numericInput = layout.inputs.find((i) => i.name === NUMERIC_INPUT);
  const numeric = numericInput ? make(NUMERIC_INPUT, numericInput.width) : undefined;
  const categorical = layout.inputs
    .filter((i) => i.column !== undefined)
    .map((i) => ({ column: i.column!, name: i.name, vocabularySize: i.vocabularySize!, input: make(i.name, 1) }));
  return { numeric, categorical, all: [...(numeric ? [numeric] : []), ...categorical.map((c) => c.input)] };
}

export interface ArchitectureDefinition<Options extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  /** Checks (and defaults) the pipeline's `model.options`. */
  options: Options;
  /**
   * Returns any tfjs LayersModel, Sequential or functional, whose output is the class probabilities (softmax,
   * classification) or one value (regression), and whose input is `featureShape` (float32) or, for tabular data,
   * Gantry's named inputs (see tabularInputs). `tf` is the active backend's namespace.
   */
  build(tf: typeof tfType, input: ArchitectureInput, options: z.output<Options>): tfType.LayersModel;
}

/** A tabular source the project registers: rows as the source holds them, streamed. */
export interface TabularSourceDefinition {
  name: string;
  description: string;
  kind: 'tabular';
  /** Where `stream` reads when the spec gives no `data.path`. */
  defaultPath?: string;
  /** Yields each row as column name → raw value; ingest infers, checks, splits and encodes them. */
  stream(path: string): AsyncIterable<Record<string, unknown>>;
}
export type DataSourceDefinition = TabularSourceDefinition;

/** What Gantry has produced before a step's point in the run: URIs and small summaries, never tensors. */
export interface StepOutputs {
  dataset?: {
    fingerprint: string;
    manifestUri: string;
    counts: { train: number; validation: number; test: number };
    statistics: unknown;
    drift: unknown;
    anomalies: unknown[];
  };
  training?: { modelUri: string; history: unknown[]; samplesPerSecond: number };
  evaluation?: { blessed: boolean; reasons: string[]; candidate: Record<string, unknown>; reportUri: string };
  version?: number;
  publishedPath?: string | null;
  rollout?: { result: string; reasons: string[] } | null;
  /** What the run's earlier steps returned, by step name. */
  steps: Record<string, unknown>;
}

export interface StepContext {
  runId: string;
  pipeline: string;
  at: StepPoint;
  spec: PipelineSpec;
  /** The placement's `options`. */
  options: Record<string, unknown>;
  outputs: StepOutputs;
  /** Reports progress (a Temporal heartbeat); a long step should call it. */
  heartbeat(details?: unknown): void;
}

/** What a step returns: data recorded in the run's result and the version's lineage, or a reason to stop the run. */
export interface StepResult {
  data?: Record<string, unknown>;
  stop?: string;
}

export interface StepDefinition {
  name: string;
  description: string;
  /** The worker pool (task queue) it runs on: `control` unless it says otherwise. */
  pool: string;
  /** A Temporal duration, e.g. `5m`: the activity's start-to-close timeout. */
  timeout: string;
  /** Attempts after the first failure. */
  retries: number;
  run(context: StepContext): Promise<StepResult | undefined | void>;
}

export interface ProjectDefinition {
  name: string;
  dataSources: DataSourceDefinition[];
  architectures: ArchitectureDefinition[];
  steps: StepDefinition[];
  pipelines: PipelineSpec[];
  /** A module (path relative to the project file) whose exported functions are Temporal workflows. */
  workflows?: string;
}

type Optional<T, K extends keyof T> = Omit<T, K> & Partial<Pick<T, K>>;

export function defineArchitecture<Options extends z.ZodType>(
  definition: Optional<ArchitectureDefinition<Options>, 'description'>,
): ArchitectureDefinition<Options> {
  return { description: '', ...definition };
}

export function defineDataSource(
  definition: Optional<TabularSourceDefinition, 'description' | 'kind'>,
): DataSourceDefinition {
  return { description: '', kind: 'tabular', ...definition };
}

export function defineStep(
  definition: Optional<StepDefinition, 'description' | 'pool' | 'timeout' | 'retries'>,
): StepDefinition {
  return { description: '', pool: 'control', timeout: '10m', retries: 3, ...definition };
}

export function defineProject(
  definition: Optional<ProjectDefinition, 'dataSources' | 'architectures' | 'steps' | 'pipelines'>,
): ProjectDefinition {
  return { dataSources: [], architectures: [], steps: [], pipelines: [], ...definition };
}
