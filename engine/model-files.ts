import type * as tfType from '@tensorflow/tfjs';
import type { ArtifactStore } from '../artifacts/store';
import { tf } from './backend';

/**
 * A layers model as TensorFlow.js's own files: `model.json` (topology + weights manifest) and
 * `weights.bin`. The same two files are read by tfjs's loaders and by Gantry's model server, so
 * what training writes is what serving loads.
 */
export interface ModelFiles {
  'model.json': string;
  'weights.bin': Uint8Array;
}

export const WEIGHTS_FILE = 'weights.bin';

function toBytes(data: tfType.io.WeightData | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array();
  const buffer = Array.isArray(data) ? tf.io.concatenateArrayBuffers(data) : data;
  return new Uint8Array(buffer);
}

export async function serializeModel(model: tfType.LayersModel): Promise<ModelFiles> {
  let files: ModelFiles | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const modelJson: tfType.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
        convertedBy: null,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
      };
      files = { 'model.json': JSON.stringify(modelJson), 'weights.bin': toBytes(artifacts.weightData) };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!files) throw new Error('model.save produced no artifacts');
  return files;
}

export async function deserializeModel(modelJsonText: string, weights: Uint8Array): Promise<tfType.LayersModel> {
  let modelJson: tfType.io.ModelJSON;
  try {
    modelJson = JSON.parse(modelJsonText) as tfType.io.ModelJSON;
  } catch (error) {
    throw new Error(`model.json is not JSON: ${(error as Error).message}`);
  }
  if (!modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
    throw new Error('model.json is not a TensorFlow.js layers model (modelTopology or weightsManifest missing)');
  }
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const expected = weightSpecs.reduce((sum, spec) => sum + spec.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (weights.byteLength !== expected) {
    throw new Error(`weights.bin holds ${weights.byteLength} bytes; model.json's manifest needs ${expected}`);
  }
  const buffer = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer;
  return tf.loadLayersModel(
    tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs, weightData: buffer }),
  );
}

/**
 * Writes `model` as `<folderKey>/model.json` + `weights.bin` and returns the folder's URI.
 * The weights go first: a reader that finds model.json finds its weights too.
 */
export async function saveModelToStore(
  store: ArtifactStore,
  folderKey: string,
  model: tfType.LayersModel,
): Promise<string> {
  const files = await serializeModel(model);
  await store.put(`${folderKey}/${WEIGHTS_FILE}`, files['weights.bin']);
  await store.put(`${folderKey}/model.json`, files['model.json']);
  return store.uri(folderKey);
}

/** Reads the model that saveModelToStore wrote at `folderUri`. */
export async function loadModelFromStore(store: ArtifactStore, folderUri: string): Promise<tfType.LayersModel> {
  return deserializeModel(
    (await store.get(`${folderUri}/model.json`)).toString('utf8'),
    await store.get(`${folderUri}/${WEIGHTS_FILE}`),
  );
}
