import { ModelRepository, METADATA_FILE } from '../artifacts/model-repository';
import {
  PREPROCESSING_FILE,
  PreprocessingSchema,
  type ImagePreprocessing,
  type Label,
  type Preprocessing,
} from '../data/preprocessing';
import { tensorNamesOf } from '../serving/records';
import { describeIssues } from '../validation/issues';
import { publishVersionUpdate, type PublishedDataset, type PublishInput } from '../workflows/api';
import type { ActivityDeps } from './deps';
import { checkedSpec } from './failures';
import { registryHandle } from '../control/registry';

/**
 * Writes a blessed version into the model repository (atomically: a server never sees half a
 * version), then tells the registry, which moves the alias to it — unless a rollout will decide.
 * The version carries its preprocessing.json, so the server takes raw records (or checks images)
 * exactly as training saw them.
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
    const metadata = {
      model: spec.model.name,
      version,
      runId,
      architecture: spec.model.architecture,
      task: dataset?.task ?? 'classification',
      ...(dataset && !regression ? { classNames: dataset.classNames } : {}),
      signature: {
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
      },
      ...(preprocessing ? { rawInputs: rawInputsOf(preprocessing.json) } : {}),
      metrics: evaluation.candidate,
      reasons: evaluation.reasons,
      gitCommit: deps.gitCommit,
    };
    const publishedPath = await repository.publish(spec.model.name, version, {
      'model.json': await deps.store.get(`${modelUri}/model.json`),
      'weights.bin': await deps.store.get(`${modelUri}/weights.bin`),
      ...(preprocessing ? { [PREPROCESSING_FILE]: preprocessing.bytes } : {}),
      [METADATA_FILE]: JSON.stringify(metadata, null, 2),
    });
    const registry = registryHandle(deps.client, spec.model.name);
    await registry.executeUpdate(publishVersionUpdate, {
      args: [{ version, publishedPath, alias: moveAlias === false ? null : spec.deployment.alias }],
    });
    return { publishedPath };
  };
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
    return {
      kind: 'image',
      shape: [preprocessing.height, preprocessing.width, preprocessing.channels],
      dtype: 'float32',
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
