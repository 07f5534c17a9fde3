import type * as tfType from '@tensorflow/tfjs';
import type { DatasetRef } from '../data/ingest';
import { loadSplit } from '../data/shards';
import type { PipelineSpec } from '../pipelines/spec';
import { buildModel } from '../training/architectures';
import { selectTrainingBackend, tf, type BackendReport } from '../engine/backend';
import type { Examples } from '../training/batches';
import { loadLatestCheckpoint, type EpochMetrics } from '../training/checkpoint';
import { createOptimizer } from '../training/optimizers';
import type { ActivityDeps } from './deps';
import { asActivityFailure } from './failures';

export interface TrainingSetup {
  backend: BackendReport;
  trainSplit: Examples;
  validationSplit: Examples;
  /** Where this run's checkpoints live. */
  checkpointPrefix: string;
  restored: Awaited<ReturnType<typeof loadLatestCheckpoint>>;
  model: tfType.LayersModel;
  optimizer: tfType.Optimizer;
  /** Epochs already trained (from the checkpoint), to be continued. */
  history: EpochMetrics[];
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
): Promise<TrainingSetup> {
  const architectureInput = {
    featureShape: dataset.featureShape,
    numClasses: dataset.numClasses,
    seed: spec.train.seed,
  };
  const build = () => buildModel(tf, spec.model.architecture, architectureInput, spec.model.options);
  const backend = await selectTrainingBackend(build, dataset.featureShape, dataset.numClasses);

  let trainSplit, validationSplit;
  try {
    [trainSplit, validationSplit] = await Promise.all([
      loadSplit(deps.store, dataset, 'train'),
      loadSplit(deps.store, dataset, 'validation'),
    ]);
  } catch (error) {
    throw asActivityFailure(error);
  }

  const checkpointPrefix = `runs/${runId}/checkpoints`;
  const restored = await loadLatestCheckpoint(deps.store, checkpointPrefix);
  const model = restored ? restored.model : build();
  const optimizer = createOptimizer(spec.train.optimizer, spec.train.learningRate);
  if (restored) await optimizer.setWeights(restored.optimizerWeights);
  const history: EpochMetrics[] = restored ? [...restored.manifest.history] : [];
  return { backend, trainSplit, validationSplit, checkpointPrefix, restored, model, optimizer, history };
}
