import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import type { ArtifactStore } from '../artifacts/store';
import { tf } from '../engine/backend';
import { loadModelFromStore, saveModelToStore } from '../engine/model-files';
import { METRIC_NAMES } from './metrics';

/**
 * Epoch checkpoints: the model, the optimizer's slots (Adam's moments and step count) and the
 * data position, so that a retried attempt continues the same optimisation instead of
 * restarting it. Each checkpoint is written in full before `latest.json` points at it, so a
 * crash mid-write leaves the previous checkpoint in force.
 */

export const EpochMetricsSchema = z.object({
  epoch: z.number().int(),
  loss: z.number(),
  accuracy: z.number(),
  valLoss: z.number(),
  valAccuracy: z.number(),
  /** The task's validation metrics (training/metrics.ts); accuracy and valAccuracy are 0 for a regression. */
  valMetrics: z.partialRecord(z.enum(METRIC_NAMES), z.number()).optional(),
  seconds: z.number(),
});
export type EpochMetrics = z.infer<typeof EpochMetricsSchema>;

export const CheckpointManifestSchema = z.object({
  /** Epochs completed: training resumes at this epoch (0-based) with a fresh shuffle for it. */
  epochsCompleted: z.number().int().min(0),
  globalStep: z.number().int().min(0),
  /** Steps already done into epoch `epochsCompleted` (a mid-epoch checkpoint); 0 at an epoch's end. */
  stepInEpoch: z.number().int().min(0).default(0),
  /** Folder holding model.json and weights.bin. */
  modelUri: z.string(),
  optimizerStateUri: z.string(),
  optimizerWeightSpecs: z.array(z.object({ name: z.string(), shape: z.array(z.number()), dtype: z.string() }).loose()),
  history: z.array(EpochMetricsSchema),
  attempt: z.number().int(),
});
export type CheckpointManifest = z.infer<typeof CheckpointManifestSchema>;

const LATEST = 'latest.json';

export async function saveCheckpoint(
  store: ArtifactStore,
  prefix: string,
  state: {
    model: tfType.LayersModel;
    optimizer: tfType.Optimizer;
    epochsCompleted: number;
    stepInEpoch?: number;
    globalStep: number;
    history: EpochMetrics[];
    attempt: number;
  },
): Promise<string> {
  const stepInEpoch = state.stepInEpoch ?? 0;
  const epoch = `epoch-${String(state.epochsCompleted).padStart(4, '0')}`;
  const step = stepInEpoch ? `-step-${String(stepInEpoch).padStart(6, '0')}` : '';
  const folder = `${prefix}/${epoch}${step}`;
  const optimizerWeights = await state.optimizer.getWeights();
  const encoded = await tf.io.encodeWeights(optimizerWeights);
  const optimizerBytes = new Uint8Array(
    Array.isArray(encoded.data) ? tf.io.concatenateArrayBuffers(encoded.data) : encoded.data,
  );
  const manifest: CheckpointManifest = {
    epochsCompleted: state.epochsCompleted,
    globalStep: state.globalStep,
    stepInEpoch,
    modelUri: await saveModelToStore(store, folder, state.model),
    optimizerStateUri: await store.put(`${folder}/optimizer.bin`, optimizerBytes),
    optimizerWeightSpecs: encoded.specs.map((s) => ({ name: s.name, shape: s.shape, dtype: s.dtype })),
    history: state.history,
    attempt: state.attempt,
  };
  const manifestUri = await store.put(`${folder}/checkpoint.json`, JSON.stringify(manifest, null, 2));
  await store.put(`${prefix}/${LATEST}`, JSON.stringify({ manifestUri }));
  return manifestUri;
}

export interface RestoredCheckpoint {
  manifest: CheckpointManifest;
  manifestUri: string;
  model: tfType.LayersModel;
  /** Optimizer slots in the order `getWeights()` gave them; feed to `optimizer.setWeights`. */
  optimizerWeights: { name: string; tensor: tfType.Tensor }[];
}

export async function loadLatestCheckpoint(
  store: ArtifactStore,
  prefix: string,
): Promise<RestoredCheckpoint | undefined> {
  const latestUri = store.uri(`${prefix}/${LATEST}`);
  if (!(await store.exists(latestUri))) return undefined;
  const { manifestUri } = z
    .object({ manifestUri: z.string() })
    .parse(JSON.parse((await store.get(latestUri)).toString('utf8')));
  const manifest = CheckpointManifestSchema.parse(JSON.parse((await store.get(manifestUri)).toString('utf8')));
  const model = await loadModelFromStore(store, manifest.modelUri);
  const optimizerBytes = await store.get(manifest.optimizerStateUri);
  const decoded = tf.io.decodeWeights(
    optimizerBytes.buffer.slice(
      optimizerBytes.byteOffset,
      optimizerBytes.byteOffset + optimizerBytes.byteLength,
    ) as ArrayBuffer,
    manifest.optimizerWeightSpecs as tfType.io.WeightsManifestEntry[],
  );
  // decodeWeights returns a map; the specs keep the order the optimizer's slots need.
  const optimizerWeights = manifest.optimizerWeightSpecs.map((spec) => ({
    name: spec.name,
    tensor: decoded[spec.name]!,
  }));
  return { manifest, manifestUri, model, optimizerWeights };
}
