import type * as tfType from '@tensorflow/tfjs';
import { ModelRepository, METADATA_FILE } from '../artifacts/model-repository';
import {
  PREPROCESSING_FILE,
  PreprocessingSchema,
  type ImagePreprocessing,
  type Label,
  type Preprocessing,
} from '../data/preprocessing';
import { deserializeModel } from '../engine/model-files';
import { compileSavedModel, savedModelFiles, type SavedModelStatus } from '../engine/saved-model-writer';
import { tensorNamesOf } from '../serving/records';
import { signatureOf } from '../serving/signature';
import { describeIssues } from '../validation/issues';
import { publishVersionUpdate, type PublishedDataset, type PublishInput } from '../workflows/api';
import type { ActivityDeps } from './deps';
import { checkedSpec } from './failures';
import { registryHandle } from '../control/registry';

/**
 * Writes a blessed version into the model repository (atomically: a server never sees half a
 * version), then tells the registry, which moves the alias to it — unless a rollout will decide.
 * The version carries its preprocessing.json, so the server takes raw records (or checks images)
 * exactly as training saw them. The folder is also a TensorFlow SavedModel (saved_model.pb, signature
 * `serving_default` under the names the tfjs version is served by, preprocessing.json and gantry.json
 * in assets.extra/), so the model repository is a TF Serving base path; a model the graph compiler
 * does not cover is published without one, and gantry.json's `savedModel` says why.
 */
export function createPublishActivity(deps: ActivityDeps) {
  return async function publish({
    runId,
    spec: rawSpec,
    version,
    modelUri,
    evaluation,
    moveAlias,
    dataset,
  }: PublishInput): Promise<{ publishedPath: string }> {
    const spec = checkedSpec(rawSpec);
    const repository = new ModelRepository(deps.home.modelRepositoryDir);
    const preprocessing = dataset ? await preprocessingOf(dataset, (uri) => deps.store.get(uri)) : undefined;
    const regression = dataset?.task === 'regression';
    const signature = {
      inputs: {
        input: {
          dtype: 'float32',
          note:
            preprocessing?.json.kind === 'tabular'
              ? `an encoded record (${PREPROCESSING_FILE}); the server also takes raw records`
              : 'raw pixel values 0..255',
        },
      },
      outputs: regression ? { value: { dtype: 'float32' } } : { probabilities: { dtype: 'float32' } },
    };
    const modelJson = await deps.store.get(`${modelUri}/model.json`);
    const weights = await deps.store.get(`${modelUri}/weights.bin`);
    const savedModel = await savedModelOfVersion(modelJson, weights, signature);
    const metadata = {
      model: spec.model.name,
      version,
      runId,
      architecture: spec.model.architecture,
      task: dataset?.task ?? 'classification',
      ...(dataset && !regression ? { classNames: dataset.classNames } : {}),
      signature,
      ...(preprocessing ? { rawInputs: rawInputsOf(preprocessing.json) } : {}),
      metrics: evaluation.candidate,
      reasons: evaluation.reasons,
      gitCommit: deps.gitCommit,
      savedModel: savedModel.status,
    };
    const metadataText = JSON.stringify(metadata, null, 2);
    const extras = {
      ...(preprocessing ? { [PREPROCESSING_FILE]: preprocessing.bytes } : {}),
      [METADATA_FILE]: metadataText,
    };
    const publishedPath = await repository.publish(spec.model.name, version, {
      'model.json': modelJson,
      'weights.bin': weights,
      ...extras,
      ...(savedModel.bytes ? savedModelFiles(savedModel.bytes, extras) : {}),
    });
    const registry = registryHandle(deps.client, spec.model.name);
    await registry.executeUpdate(publishVersionUpdate, {
      args: [{ version, publishedPath, alias: moveAlias === false ? null : spec.deployment.alias }],
    });
    return { publishedPath };
  };
}

/**
 * The version as a SavedModel whose signature has the keys the tfjs version is served under (what the
 * server's signatureOf makes of the model and this metadata), or why there is none: a model the graph
 * compiler does not cover, or that the server could not serve either. The tfjs files are the version;
 * the publish never fails for want of a SavedModel, and gantry.json keeps the reason.
 */
async function savedModelOfVersion(
  modelJson: Uint8Array,
  weights: Uint8Array,
  signature: { inputs: Record<string, unknown>; outputs: Record<string, unknown> },
): Promise<{ bytes?: Uint8Array; status: SavedModelStatus }> {
  let model: tfType.LayersModel | undefined;
  let step = 'the model files';
  try {
    model = await deserializeModel(Buffer.from(modelJson).toString('utf8'), weights);
    step = 'the serving signature';
    const served = signatureOf(model, { signature });
    const names = { inputs: served.inputs.map((t) => t.key), outputs: served.outputs.map((t) => t.key) };
    step = 'the SavedModel writer';
    return compileSavedModel(model, names);
  } catch (error) {
    return { status: { written: false, reason: `${step} failed: ${(error as Error).message}` } };
  } finally {
    model?.dispose();
  }
}

/**
 * The version's preprocessing.json: the dataset's own (checked, so a bad file fails the publish
 * rather than the server's load), or an image one built from the feature shape and classes;
 * undefined for a feature shape that is neither.
 */
export async function preprocessingOf(
  dataset: PublishedDataset,
  read: (uri: string) => Promise<Uint8Array>,
): Promise<{ json: Preprocessing; bytes: Uint8Array | string } | undefined> {
  if (dataset.preprocessingUri !== null) {
    const bytes = await read(dataset.preprocessingUri);
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch (error) {
      throw new Error(`${dataset.preprocessingUri} is not JSON: ${(error as Error).message}`);
    }
    const parsed = PreprocessingSchema.safeParse(raw);
    if (!parsed.success) throw new Error(`${dataset.preprocessingUri}: ${describeIssues(parsed.error.issues)}`);
    return { json: parsed.data, bytes };
  }
  const [height, width, channels = 1, ...rest] = dataset.featureShape;
  if (height === undefined || width === undefined || rest.length > 0 || (channels !== 1 && channels !== 3))
    return undefined;
  let label: Label;
  if (dataset.task === 'regression') label = { name: 'label', task: 'regression' };
  else if (dataset.classNames.length >= 2)
    label = { name: 'label', task: 'classification', classes: dataset.classNames };
  else return undefined;
  const image: ImagePreprocessing = { kind: 'image', formatVersion: 1, height, width, channels, label };
  return { json: image, bytes: JSON.stringify(image, null, 2) };
}

/** gantry.json's description of what a client sends: each column's name, tensor name, kind and dtype. */
function rawInputsOf(preprocessing: Preprocessing): object {
  if (preprocessing.kind === 'image')
    // What a client may send besides the pixel tensor: PNG or JPEG files (serving/images.ts), decoded and
    // resized to `shape` by the function the ingest used.
    return {
      kind: 'image',
      tensorName: 'image',
      dtype: 'string',
      encodings: ['png', 'jpeg'],
      shape: [preprocessing.height, preprocessing.width, preprocessing.channels],
      pixels: { dtype: 'float32', range: [0, 255] },
    };
  const dtype = { numeric: 'float32', categorical: 'string', boolean: 'bool' } as const;
  const tensorNames = tensorNamesOf(preprocessing.columns.map((c) => c.name));
  return {
    kind: 'tabular',
    columns: preprocessing.columns.map((c, i) => ({
      name: c.name,
      tensorName: tensorNames[i],
      kind: c.kind,
      dtype: dtype[c.kind],
      missing: c.missing,
      ...(c.kind === 'categorical' ? { vocabulary: c.vocabulary.length } : {}),
    })),
    label: preprocessing.label,
  };
}
