import type * as tfType from '@tensorflow/tfjs';
import { ModelRepository, METADATA_FILE } from '../artifacts/model-repository';
import {
  PREPROCESSING_FILE,
  PreprocessingSchema,
  type ImagePreprocessing,
  type Label,
  type Preprocessing,
  tabularInputsOf,
} from '../data/preprocessing';
import { deserializeModel } from '../engine/model-files';
import { compileSavedModel, savedModelFiles, type SavedModelStatus } from '../engine/saved-model-writer';
import { tensorNamesOf } from '../serving/records';
import { signatureOf } from '../serving/signature';
import { describeIssues } from '../validation/issues';
import { publishVersionUpdate, type PublishedDataset, type PublishInput } from '../workflows/api';
import type { ActivityDeps } from './deps';
import { checkedSpec } from './failures';
import { ActivityClock } from './timing';
import type { Timed } from '../workflows/timings-api';
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
  }: PublishInput): Promise<{ publishedPath: string } & Timed> {
    const clock = new ActivityClock();
    const spec = checkedSpec(rawSpec);
    const repository = new ModelRepository(deps.home.modelRepositoryDir);
    const regression = dataset?.task === 'regression';
    const [preprocessing, modelJson, weights] = await clock.part('read model', () =>
      Promise.all([
        dataset ? preprocessingOf(dataset, (uri) => deps.store.get(uri)) : undefined,
        deps.store.get(`${modelUri}/model.json`),
        deps.store.get(`${modelUri}/weights.bin`),
      ]),
    );
    const { signature, savedModel } = await clock.part('saved model', () =>
      savedModelOfVersion(modelJson, weights, (inputs) => signatureMetadataOf(inputs, preprocessing?.json, regression)),
    );
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
    const publishedPath = await clock.part('write version', () =>
      repository.publish(spec.model.name, version, {
        'model.json': modelJson,
        'weights.bin': weights,
        ...extras,
        ...(savedModel.bytes ? savedModelFiles(savedModel.bytes, extras) : {}),
      }),
    );
    const registry = registryHandle(deps.client, spec.model.name);
    await clock.part('registry update', () =>
      registry.executeUpdate(publishVersionUpdate, {
        args: [{ version, publishedPath, alias: moveAlias === false ? null : spec.deployment.alias }],
      }),
    );
    return { publishedPath, timing: clock.timing() };
  };
}

/** One input of gantry.json's `signature`: what a client feeds under that key. */
interface SignatureInput {
  dtype: 'float32';
  shape?: number[];
  note: string;
}
interface SignatureMetadata {
  inputs: Record<string, SignatureInput>;
  outputs: Record<string, { dtype: 'float32' }>;
}

/** A model input as the server keys it (the input layer's name) and its shape, batch first (-1: any). */
interface ModelInput {
  name: string;
  shape: number[];
}

/**
 * gantry.json's `signature`: one float32 `input` (the encoded record, or pixels) for a model with one input; for a
 * model with several, its real inputs in the model's order, keyed as the server and the SavedModel key them (the
 * input layers' names: `numeric`, then one per categorical column), each with its shape and what it holds. The
 * server maps these keys onto the model's inputs by position (serving/signature.ts), so where JSON would not keep
 * them in order (a name that reads as an integer sorts first) they go to `inputsInOrder` instead, and the server
 * keys the inputs by their layer names, the same names.
 */
export function signatureMetadataOf(
  inputs: ModelInput[] | undefined,
  preprocessing: Preprocessing | undefined,
  regression: boolean,
): SignatureMetadata | (Omit<SignatureMetadata, 'inputs'> & { inputsInOrder: (SignatureInput & { name: string })[] }) {
  const outputs: SignatureMetadata['outputs'] = regression
    ? { value: { dtype: 'float32' } }
    : { probabilities: { dtype: 'float32' } };
  if (!inputs || inputs.length <= 1) {
    const note =
      preprocessing?.kind === 'tabular'
        ? `an encoded record (${PREPROCESSING_FILE}); the server also takes raw records`
        : 'raw pixel values 0..255';
    return { inputs: { input: { dtype: 'float32', note } }, outputs };
  }
  const layout = preprocessing?.kind === 'tabular' ? tabularInputsOf(preprocessing) : undefined;
  const described = inputs.map(({ name, shape }) => {
    const named = layout?.inputs.find((i) => i.name === name);
    let note: string;
    if (named?.column !== undefined)
      note =
        `the category index of column ${JSON.stringify(named.column)}: 0..${named.vocabularySize! - 2} in its ` +
        `vocabulary (${PREPROCESSING_FILE}), ${named.vocabularySize! - 1} out of vocabulary`;
    else if (named)
      note = `the numeric vector: the ${named.width} numeric and boolean columns, encoded (${PREPROCESSING_FILE})`;
    else note = "one of the model's inputs";
    return {
      name,
      dtype: 'float32' as const,
      shape,
      note: layout ? `${note}; the server also takes raw records` : note,
    };
  });
  const keyed = Object.fromEntries(described.map(({ name, ...input }) => [name, input]));
  if (Object.keys(keyed).some((key, i) => key !== described[i]!.name)) return { inputsInOrder: described, outputs };
  return { inputs: keyed, outputs };
}

/**
 * The version's gantry.json `signature` (from the model's inputs) and the version as a SavedModel whose signature
 * has the keys the tfjs version is served under (what the server's signatureOf makes of the model and this
 * metadata), or why there is none: a model the graph compiler does not cover, or that the server could not serve
 * either. The tfjs files are the version; the publish never fails for want of a SavedModel, and gantry.json keeps
 * the reason (a model that does not even load gets the one-input signature).
 */
async function savedModelOfVersion<S extends { outputs: Record<string, unknown> }>(
  modelJson: Uint8Array,
  weights: Uint8Array,
  signatureFor: (inputs: ModelInput[] | undefined) => S,
): Promise<{ signature: S; savedModel: { bytes?: Uint8Array; status: SavedModelStatus } }> {
  let model: tfType.LayersModel | undefined;
  let signature = signatureFor(undefined);
  let step = 'the model files';
  try {
    model = await deserializeModel(Buffer.from(modelJson).toString('utf8'), weights);
    step = "gantry.json's signature";
    signature = signatureFor(
      model.inputs.map((t) => ({ name: t.sourceLayer.name, shape: t.shape.map((d) => d ?? -1) })),
    );
    step = 'the serving signature';
    const served = signatureOf(model, { signature });
    const names = { inputs: served.inputs.map((t) => t.key), outputs: served.outputs.map((t) => t.key) };
    step = 'the SavedModel writer';
    return { signature, savedModel: compileSavedModel(model, names) };
  } catch (error) {
    return {
      signature,
      savedModel: { status: { written: false, reason: `${step} failed: ${(error as Error).message}` } },
    };
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
