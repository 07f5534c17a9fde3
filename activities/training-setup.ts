import type * as tfType from '@tensorflow/tfjs';
import type { DatasetRef } from '../data/ingest';
import { type Preprocessing, PreprocessingSchema } from '../data/preprocessing';
import { loadSplit } from '../data/shards';
import type { PipelineSpec } from '../pipelines/spec';
import { buildModel } from '../training/architectures';
import { inputFeedOf } from '../training/batches';
import { selectTrainingBackend, tf, type BackendReport } from '../engine/backend';
import { loadLatestCheckpoint, type EpochMetrics } from '../training/checkpoint';
import type { LoopInputs } from '../training/loop';
import { createOptimizer } from '../training/optimizers';
import type { ActivityDeps } from './deps';
import { asActivityFailure } from './failures';
import type { ActivityClock } from './timing';

export interface TrainingSetup {
  backend: BackendReport;
  /** Where this run's checkpoints live. */
  checkpointPrefix: string;
  restored: Awaited<ReturnType<typeof loadLatestCheckpoint>>;
  model: tfType.LayersModel;
  optimizer: tfType.Optimizer;
  /** Epochs already trained (from the checkpoint), to be continued. */
  history: EpochMetrics[];
  /** What the training loop is given the same way by every trainer: model, data and the spec's loop settings. */
  loop: LoopInputs;
}

/**
 * What every trainer — the single one and each replica of a data-parallel job — starts from: the
 * backend that can train this architecture, the run's train and validation splits, and the model
 * and optimizer, fresh or restored from the run's latest checkpoint.
 */
export async function prepareTraining(
  deps: ActivityDeps,
  runId: string,
  spec: PipelineSpec,
  dataset: DatasetRef,
  /** Times the parts: `load data` (the splits), `setup` (the rest). */
  clock?: ActivityClock,
): Promise<TrainingSetup> {
  const setupStarted = performance.now();
  clock?.add('setup', 0); // first in the listing: it starts first (and goes on after the load)
  const preprocessing = await loadDatasetPreprocessing(deps, dataset);
  const architectureInput = {
    featureShape: dataset.featureShape,
    task: dataset.task,
    numClasses: dataset.numClasses,
    seed: spec.train.seed,
    preprocessing,
  };
  const build = () => buildModel(tf, spec.model.architecture, architectureInput, spec.model.options);
  const { seed: _seed, ...kernelsOf } = architectureInput;
  const backendKey = JSON.stringify({ architecture: spec.model.architecture, kernelsOf, options: spec.model.options });
  const backend = await selectTrainingBackend(build, dataset.featureShape, backendKey);

  let trainSplit, validationSplit;
  const loadStarted = performance.now();
  try {
    [trainSplit, validationSplit] = await Promise.all([
      loadSplit(deps.store, dataset, 'train'),
      loadSplit(deps.store, dataset, 'validation'),
    ]);
  } catch (error) {
    throw asActivityFailure(error);
  }
  const loadMs = performance.now() - loadStarted;
  clock?.add('load data', loadMs);

  const checkpointPrefix = `runs/${runId}/checkpoints`;
  const restored = await loadLatestCheckpoint(deps.store, checkpointPrefix);
  const model = restored ? restored.model : build();
  const optimizer = createOptimizer(spec.train.optimizer, spec.train.learningRate);
  if (restored) await optimizer.setWeights(restored.optimizerWeights);
  const history: EpochMetrics[] = restored ? [...restored.manifest.history] : [];
  clock?.add('setup', performance.now() - setupStarted - loadMs);
  const loop = {
    model,
    optimizer,
    train: trainSplit,
    validation: validationSplit,
    featureShape: dataset.featureShape,
    numClasses: dataset.numClasses,
    task: dataset.task,
    // A model with several inputs (numeric + embedded categoricals) is fed the encoded rows split into them.
    feed: inputFeedOf(model, preprocessing),
    epochs: spec.train.epochs,
    batchSize: spec.train.batchSize,
    seed: spec.train.seed,
    stepDelayMs: spec.train.stepDelayMs,
  };
  return { backend, checkpointPrefix, restored, model, optimizer, history, loop };
}

/** The dataset's preprocessing (column slots, vocabularies) for the architecture's builder; null for images. */
export async function loadDatasetPreprocessing(deps: ActivityDeps, dataset: DatasetRef): Promise<Preprocessing | null> {
  if (!dataset.preprocessingUri) return null;
  try {
    return PreprocessingSchema.parse(JSON.parse((await deps.store.get(dataset.preprocessingUri)).toString('utf8')));
  } catch (error) {
    throw asActivityFailure(error);
  }
}

/** The trainer's log line for a finished epoch (a lone trainer's and rank 0's alike). */
export function epochLogLine(metrics: EpochMetrics, epochs: number): string {
  const rmse = metrics.valMetrics?.rmse;
  const scores =
    rmse !== undefined
      ? `mse ${metrics.loss.toFixed(4)} val_rmse ${rmse.toFixed(4)} val_r2 ${(metrics.valMetrics?.r2 ?? 0).toFixed(4)}`
      : `acc ${metrics.accuracy.toFixed(4)} val_acc ${metrics.valAccuracy.toFixed(4)}`;
  const seconds = metrics.seconds.toFixed(1);
  return `epoch ${metrics.epoch}/${epochs}: loss ${metrics.loss.toFixed(4)} ${scores} (${seconds} s)`;
}

/** What a training loop's error becomes: a cancellation stays one, anything else a typed failure if it has a type. */
export function trainingFailure(cancellation: AbortSignal, error: unknown): unknown {
  if (cancellation.aborted) return cancellation.reason ?? error;
  return asActivityFailure(error);
}
