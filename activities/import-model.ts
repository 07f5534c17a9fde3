import { lstat, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type * as tfType from '@tensorflow/tfjs';
import { METADATA_FILE, ModelRepository } from '../artifacts/model-repository';
import type { ArtifactStore } from '../artifacts/store';
import { readRegistry, registryHandle } from '../control/registry';
import { DatasetManifestSchema, type DatasetManifest } from '../data/ingest';
import { loadSplit } from '../data/shards';
import { activeBackend, tf } from '../engine/backend';
import { deserializeModel, WEIGHTS_FILE } from '../engine/model-files';
import {
  DEFAULT_SIGNATURE,
  findSignature,
  readSavedModel,
  readServeSignature,
  SAVED_MODEL_FILE,
  SavedModelError,
  type SavedTensorInfo,
} from '../engine/saved-model';
import { loadSavedModelRunner, savedModelsUnavailable } from '../engine/saved-model-session';
import { EvaluationSpecSchema, type PipelineSpec } from '../pipelines/spec';
import { evaluateModel, type ModelMetrics, type Predictor } from '../training/evaluate';
import { validatePipeline } from '../pipelines/define';
import {
  progressQuery,
  publishVersionUpdate,
  registerVersionUpdate,
  type ImportActivities,
  type ImportEvaluation,
  type ImportFormat,
  type ImportInspection,
  type ModelVersion,
  type RegistryState,
} from '../workflows/api';
import { decideBlessing } from './blessing';
import type { ActivityDeps } from './deps';
import { registryStartOperation } from './register';

/**
 * `gantry models import`'s activities (workflows/import-model.ts runs them in order): inspect the folder, copy it
 * into the artifact store, evaluate it on the test split of a dataset the model's registry knows, register it,
 * and — when blessed — write it into the model repository as the version. Each is safe to retry: the copy is keyed
 * by the import's id, the registry answers a retried register with the same version, and the repository refuses
 * nothing but a different model under the same number.
 */

/** Most files an imported folder may hold, and most bytes in all (each file is read into memory to copy it). */
export const MAX_IMPORT_FILES = 10_000;
export const MAX_IMPORT_BYTES = 2 * 1024 * 1024 * 1024;
/** A model.json larger than this is not a layers model's topology. */
const MAX_MODEL_JSON_BYTES = 64 * 1024 * 1024;

/** A refusal: the folder or the request is wrong, and retrying would not change that. */
function refused(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'ImportRefused');
}

/** Every regular file under `dir` (relative, slash-separated), bounded; links and other kinds are refused. */
async function listFiles(dir: string): Promise<{ name: string; bytes: number }[]> {
  const files: { name: string; bytes: number }[] = [];
  let total = 0;
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(path.join(dir, relative), { withFileTypes: true });
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const name = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        await walk(name);
        continue;
      }
      if (!entry.isFile()) throw refused(`${path.join(dir, name)} is not a regular file (links are not imported)`);
      const { size } = await lstat(path.join(dir, name));
      total += size;
      files.push({ name, bytes: size });
      if (files.length > MAX_IMPORT_FILES)
        throw refused(`${dir} holds more than ${MAX_IMPORT_FILES} files; not a model folder`);
      if (total > MAX_IMPORT_BYTES) throw refused(`${dir} holds more than ${MAX_IMPORT_BYTES} bytes; too large`);
    }
  };
  await walk('');
  return files;
}

/** model.json and the weight files its manifest names (in manifest order), checked to stay in the folder. */
async function readTfjsFolder(read: (name: string) => Promise<Buffer>, where: string) {
  const modelJsonBytes = await read('model.json');
  if (modelJsonBytes.length > MAX_MODEL_JSON_BYTES)
    throw refused(
      `${where}/model.json is ${modelJsonBytes.length} bytes; the most Gantry reads is ${MAX_MODEL_JSON_BYTES}`,
    );
  const text = modelJsonBytes.toString('utf8');
  let manifest: { weightsManifest?: { paths?: unknown }[] };
  try {
    manifest = JSON.parse(text) as typeof manifest;
  } catch (error) {
    throw refused(`${where}/model.json is not JSON: ${(error as Error).message}`);
  }
  const groups = Array.isArray(manifest.weightsManifest) ? manifest.weightsManifest : [];
  const paths = groups.flatMap((group) => (Array.isArray(group?.paths) ? group.paths : []));
  if (!paths.every((p): p is string => typeof p === 'string' && /^[A-Za-z0-9_.-]+$/.test(p) && p !== '..'))
    throw refused(`${where}/model.json: each weightsManifest path must be a file name in its folder`);
  const chunks: Buffer[] = [];
  for (const p of paths) chunks.push(await read(p));
  return { text, weightFiles: paths, weights: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) };
}

async function loadTfjs(read: (name: string) => Promise<Buffer>, where: string): Promise<tfType.LayersModel> {
  const { text, weights } = await readTfjsFolder(read, where);
  try {
    return await deserializeModel(text, weights);
  } catch (error) {
    throw refused(`${where}: ${(error as Error).message}`);
  }
}

type DescribedTensor = ImportInspection['inputs'][number];
const tensorOfLayer = (t: tfType.SymbolicTensor): DescribedTensor => ({
  key: t.sourceLayer.name,
  dtype: t.dtype === 'float32' ? 'DT_FLOAT' : t.dtype === 'int32' ? 'DT_INT32' : `DT_${t.dtype.toUpperCase()}`,
  shape: t.shape.map((d) => d ?? -1),
});
/** A signature's tensor as an inspection lists it (TensorFlow's dtype name; null for an unknown rank). */
const described = ({ key, tfDType, shape }: SavedTensorInfo): DescribedTensor => ({
  key,
  dtype: tfDType,
  shape: shape ?? null,
});

/** The local folder of a file:// URI (SavedModels load from a folder; the store is file-based today). */
function localFolder(uri: string): string {
  if (!uri.startsWith('file://')) throw refused(`cannot load a SavedModel from ${uri}: only file:// stores`);
  return fileURLToPath(uri);
}

/** How a test batch of the dataset's feature shape becomes the signature's input, or why it cannot. */
export function fitSignature(
  inputs: { key: string; dtype: string; shape: number[] | null }[],
  outputs: { key: string; dtype: string; shape: number[] | null }[],
  dataset: { featureShape: number[]; task: 'classification' | 'regression'; numClasses: number },
): { inputShape: number[] } | { reason: string } {
  const [input] = inputs;
  const [output] = outputs;
  if (inputs.length !== 1 || !input)
    return { reason: `the signature has ${inputs.length} inputs; evaluation feeds one` };
  if (outputs.length !== 1 || !output)
    return { reason: `the signature has ${outputs.length} outputs; evaluation reads one` };
  if (input.dtype !== 'DT_FLOAT')
    return { reason: `input "${input.key}" is ${input.dtype}; the dataset's features are floats` };
  if (output.dtype !== 'DT_FLOAT') return { reason: `output "${output.key}" is ${output.dtype}, not floats` };
  const features = dataset.featureShape;
  const size = features.reduce((a, b) => a * b, 1);
  const shown = (shape: number[]) => `[${shape.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;
  if (input.shape === null) return { reason: `input "${input.key}" has an unknown rank` };
  const inner = input.shape.slice(1);
  const same = inner.length === features.length && inner.every((d, i) => d < 0 || d === features[i]);
  const reshapable = inner.length > 0 && inner.every((d) => d > 0) && inner.reduce((a, b) => a * b, 1) === size;
  if (!same && !reshapable)
    return {
      reason:
        `input "${input.key}" takes ${shown(input.shape)}; the dataset's examples are ${shown(features)} ` +
        `(${size} values)`,
    };
  const outShape = output.shape;
  if (dataset.task === 'classification') {
    if (!outShape || outShape.length !== 2 || outShape[1] !== dataset.numClasses)
      return {
        reason:
          `output "${output.key}" gives ${outShape ? shown(outShape) : 'an unknown shape'}; the dataset has ` +
          `${dataset.numClasses} classes, so it needs [?, ${dataset.numClasses}] probabilities`,
      };
  } else if (!outShape || !(outShape.length === 1 || (outShape.length === 2 && outShape[1] === 1))) {
    return {
      reason:
        `output "${output.key}" gives ${outShape ? shown(outShape) : 'an unknown shape'}; a regression needs ` +
        'one value per example',
    };
  }
  return { inputShape: same ? features : inner };
}

/** A SavedModel signature as a Predictor: a batch of the dataset's shape in, its one output out. */
async function savedModelPredictor(
  dir: string,
  signatureName: string,
  inputShape: number[],
): Promise<Predictor & { dispose(): void }> {
  const info = await readSavedModel(dir);
  const runner = loadSavedModelRunner(dir, info.tags, findSignature(info, signatureName, dir));
  return {
    predict: ((xs: tfType.Tensor) => {
      const batch = tf.reshape(xs, [xs.shape[0]!, ...inputShape]);
      try {
        return runner.predict(batch)[0]!;
      } finally {
        if (batch !== xs) batch.dispose();
      }
    }) as Predictor['predict'],
    dispose: () => runner.dispose(),
  };
}

/** A layers model fed batches of the dataset's shape, reshaped to its input's (evaluation runs it inside tf.tidy). */
function reshaping(model: tfType.LayersModel, inputShape: number[]): Predictor & { dispose(): void } {
  return {
    predict: ((xs: tfType.Tensor) =>
      model.predict(tf.reshape(xs, [xs.shape[0]!, ...inputShape]))) as Predictor['predict'],
    dispose: () => model.dispose(),
  };
}

interface ResolvedDataset {
  manifest: DatasetManifest;
  /** The version whose pipeline spec gives the gates, if any. */
  specOf: ModelVersion | null;
}

async function readManifest(store: ArtifactStore, uri: string, what: string): Promise<DatasetManifest> {
  if (!(await store.exists(uri))) throw refused(`${what}: no dataset manifest at ${uri}`);
  try {
    return DatasetManifestSchema.parse(JSON.parse((await store.get(uri)).toString('utf8')));
  } catch (error) {
    throw refused(`${what}: ${uri} is not a readable dataset manifest (${(error as Error).message.split('\n')[0]})`);
  }
}

const FINGERPRINT = /^[0-9a-f]{64}$/;
const manifestUriOf = (store: ArtifactStore, fingerprint: string) => store.uri(`datasets/${fingerprint}/manifest.json`);

/** The dataset to evaluate on: `--dataset`'s, else the one the registry's champion or newest version was trained on. */
async function resolveDataset(
  deps: ActivityDeps,
  registry: RegistryState | undefined,
  dataset: string | undefined,
): Promise<ResolvedDataset | { reason: string }> {
  const versions = [...(registry?.versions ?? [])].reverse();
  const withSpec = (fingerprint: string) =>
    versions.find((v) => v.lineage.datasetFingerprint === fingerprint && specOf(v)) ??
    versions.find((v) => specOf(v)) ??
    null;
  if (dataset !== undefined) {
    const what = `--dataset ${dataset}`;
    let fingerprint: string | undefined;
    if (FINGERPRINT.test(dataset)) fingerprint = dataset;
    else if (dataset.startsWith('file://') || dataset.endsWith('manifest.json')) {
      const uri = dataset.startsWith('file://') ? dataset : pathToFileURL(path.resolve(dataset)).href;
      const manifest = await readManifest(deps.store, uri, what);
      return { manifest, specOf: withSpec(manifest.fingerprint) };
    } else {
      // A run id: a version it registered, else the run's own progress (a run that registered nothing).
      fingerprint = versions.find((v) => v.lineage.runId === dataset)?.lineage.datasetFingerprint;
      if (!fingerprint) {
        try {
          fingerprint = (await deps.client.workflow.getHandle(dataset).query(progressQuery)).dataset?.fingerprint;
        } catch (error) {
          if (!(error instanceof WorkflowNotFoundError)) throw error;
        }
      }
      if (!fingerprint) throw refused(`${what}: not a dataset fingerprint, a manifest or a run that ingested data`);
    }
    return {
      manifest: await readManifest(deps.store, manifestUriOf(deps.store, fingerprint), what),
      specOf: withSpec(fingerprint),
    };
  }
  const champion = registry?.aliases[registry.championAlias ?? 'champion'];
  const candidates = [...versions.filter((v) => v.version === champion), ...versions];
  for (const v of candidates) {
    if (!FINGERPRINT.test(v.lineage.datasetFingerprint)) continue;
    const uri = manifestUriOf(deps.store, v.lineage.datasetFingerprint);
    if (await deps.store.exists(uri))
      return {
        manifest: await readManifest(deps.store, uri, `v${v.version}'s dataset`),
        specOf: withSpec(v.lineage.datasetFingerprint),
      };
  }
  return {
    reason: registry
      ? `no version of the model names a dataset that is still in the artifact store, and --dataset was not given`
      : `the model has no versions yet, so no dataset is known; pass --dataset`,
  };
}

/** The version's pipeline spec when its lineage holds a valid one (imported and test versions do not). */
function specOf(version: ModelVersion): PipelineSpec | undefined {
  if (version.lineage.source) return undefined;
  try {
    return validatePipeline(version.lineage.spec);
  } catch {
    return undefined;
  }
}

/**
 * Measures a published version's folder (tfjs or SavedModel) on `test`; a SavedModel whose signature does not fit
 * the dataset is a SavedModelError saying why.
 */
export async function measurePublishedFolder(
  folder: string,
  signature: string,
  manifest: Pick<DatasetManifest, 'featureShape' | 'numClasses' | 'task'>,
  test: Awaited<ReturnType<typeof loadSplit>>,
): Promise<ModelMetrics> {
  const format: ImportFormat = (await lstat(path.join(folder, 'model.json')).catch(() => null))
    ? 'tfjs'
    : 'saved_model';
  let predictor: Predictor & { dispose(): void };
  if (format === 'tfjs') {
    predictor = await loadTfjs((name) => readFile(path.join(folder, name)), folder);
  } else {
    const sig = await readServeSignature(folder, signature);
    const fit = fitSignature(sig.inputs.map(described), sig.outputs.map(described), manifest);
    if ('reason' in fit) throw new SavedModelError(fit.reason);
    predictor = await savedModelPredictor(folder, signature, fit.inputShape);
  }
  try {
    return await evaluateModel(predictor, test, manifest.featureShape, manifest.numClasses, undefined, manifest.task);
  } finally {
    predictor.dispose();
  }
}

export function createImportActivities(deps: ActivityDeps): ImportActivities {
  const readStaged = (artifactUri: string) => (name: string) => deps.store.get(`${artifactUri}/${name}`);

  return {
    async inspectImport({ path: dir, signature }) {
      if (!path.isAbsolute(dir)) throw refused(`the import path ${dir} must be absolute`);
      const info = await lstat(dir).catch(() => null);
      if (!info) throw refused(`${dir} does not exist`);
      if (!info.isDirectory()) throw refused(`${dir} is not a folder (a SavedModel or a tfjs model.json folder)`);
      const files = await listFiles(dir);
      const names = new Set(files.map((f) => f.name));
      if (names.has(SAVED_MODEL_FILE)) {
        try {
          const sig = await readServeSignature(dir, signature);
          return {
            format: 'saved_model',
            signature,
            inputs: sig.inputs.map(described),
            outputs: sig.outputs.map(described),
            files,
          };
        } catch (error) {
          if (error instanceof SavedModelError) throw refused(error.message);
          throw error;
        }
      }
      if (names.has('model.json')) {
        if (signature !== DEFAULT_SIGNATURE)
          throw refused(`${dir} is a tfjs model, which has one signature: ${DEFAULT_SIGNATURE}, not "${signature}"`);
        const model = await loadTfjs((name) => readFile(path.join(dir, name)), dir);
        try {
          const { weightFiles } = await readTfjsFolder((name) => readFile(path.join(dir, name)), dir);
          const keep = new Set(['model.json', ...weightFiles]);
          return {
            format: 'tfjs',
            signature,
            inputs: model.inputs.map(tensorOfLayer),
            outputs: model.outputs.map(tensorOfLayer),
            files: files.filter((f) => keep.has(f.name)),
          };
        } finally {
          model.dispose();
        }
      }
      throw refused(`${dir} holds neither saved_model.pb (a SavedModel) nor model.json (a tfjs layers model)`);
    },

    async stageImport({ importId, path: dir, inspection }) {
      const context = Context.current();
      const prefix = `imports/${importId}`;
      for (const [i, file] of inspection.files.entries()) {
        const bytes = await readFile(path.join(dir, file.name));
        // The folder changed since it was inspected: copying it now would register something never checked.
        if (bytes.length !== file.bytes) throw refused(`${path.join(dir, file.name)} changed while it was imported`);
        await deps.store.put(`${prefix}/${file.name}`, bytes);
        context.heartbeat({ copied: i + 1, of: inspection.files.length });
      }
      return { artifactUri: deps.store.uri(prefix) };
    },

    async evaluateImport({ importId, model, artifactUri, inspection, dataset }) {
      const context = Context.current();
      const registry = await readRegistry(deps.client, model);
      const resolved = await resolveDataset(deps, registry, dataset);
      const unevaluated = (reason: string, fingerprint: string | null): ImportEvaluation => ({
        evaluation: null,
        datasetFingerprint: fingerprint,
        reason,
        // An import that cannot be measured is blessed on the importer's word: it reaches production traffic only
        // through a rollout's canary (judged on live traffic) or an explicit `gantry promote`.
        blessed: true,
        reasons: [
          `pass: not evaluated: ${reason}`,
          "pass: an import that cannot be evaluated is blessed on the importer's word; it serves traffic only " +
            'through a rollout or gantry promote',
        ],
      });
      if ('reason' in resolved) return unevaluated(resolved.reason, null);
      const { manifest } = resolved;
      const fit = fitSignature(inspection.inputs, inspection.outputs, manifest);
      if ('reason' in fit) return unevaluated(fit.reason, manifest.fingerprint);

      await activeBackend();
      // A worker without the native backend cannot run a SavedModel: the version is registered, unevaluated, saying
      // so (a worker with it measures the next import; `gantry models describe` shows the reason).
      const noSession = inspection.format === 'saved_model' ? savedModelsUnavailable() : undefined;
      if (noSession) return unevaluated(`this worker cannot evaluate it: ${noSession}`, manifest.fingerprint);
      const test = await loadSplit(deps.store, manifest, 'test');
      context.heartbeat({ evaluating: 'candidate' });
      const predictor =
        inspection.format === 'tfjs'
          ? reshaping(await loadTfjs(readStaged(artifactUri), artifactUri), fit.inputShape)
          : await savedModelPredictor(localFolder(artifactUri), inspection.signature, fit.inputShape).catch(
              (error: Error) => {
                throw error instanceof SavedModelError ? refused(error.message) : error;
              },
            );
      let candidate: ModelMetrics;
      try {
        candidate = await evaluateModel(
          predictor,
          test,
          manifest.featureShape,
          manifest.numClasses,
          undefined,
          manifest.task,
        );
      } finally {
        predictor.dispose();
      }

      // The champion on the same split, so the change gates compare like with like (as a pipeline's evaluate does).
      const reasons: string[] = [];
      const championVersion = registry?.aliases[registry.championAlias ?? 'champion'];
      const championEntry = registry?.versions.find((v) => v.version === championVersion && v.publishedPath);
      let champion: { version: number; metrics: ModelMetrics } | null = null;
      if (championEntry?.publishedPath) {
        context.heartbeat({ evaluating: `champion v${championEntry.version}` });
        try {
          champion = {
            version: championEntry.version,
            metrics: await measurePublishedFolder(
              championEntry.publishedPath,
              championEntry.lineage.source?.signature ?? DEFAULT_SIGNATURE,
              manifest,
              test,
            ),
          };
        } catch (error) {
          if (!(error instanceof SavedModelError)) throw error;
          reasons.push(
            `note: champion v${championEntry.version} could not be measured on this split: ${error.message}`,
          );
        }
      }
      const spec = resolved.specOf ? specOf(resolved.specOf) : undefined;
      const gate = spec?.evaluation ?? EvaluationSpecSchema.parse({});
      reasons.push(
        spec
          ? `note: gated by pipeline ${spec.name}'s evaluation (from v${resolved.specOf!.version})`
          : 'note: no version carries a pipeline spec, so the default gates apply',
      );
      const decision = decideBlessing(candidate, champion, gate);
      const report = {
        importId,
        model,
        datasetFingerprint: manifest.fingerprint,
        candidate,
        champion,
        ...decision,
        gate,
      };
      const reportUri = await deps.store.put(`imports/${importId}/evaluation.json`, JSON.stringify(report, null, 2));
      return {
        evaluation: { candidate, champion, blessed: decision.blessed, reasons: decision.reasons, reportUri },
        datasetFingerprint: manifest.fingerprint,
        reason: null,
        blessed: decision.blessed,
        reasons: [...decision.reasons, ...reasons],
      };
    },

    async registerImport({ model, request }) {
      return deps.client.workflow.executeUpdateWithStart(registerVersionUpdate, {
        startWorkflowOperation: registryStartOperation(model),
        args: [request],
      });
    },

    async publishImport({ importId, model, version, artifactUri, inspection, evaluation }) {
      const read = readStaged(artifactUri);
      const files: Record<string, Uint8Array | string> = {};
      if (inspection.format === 'tfjs') {
        // Published as Gantry writes its own versions (model.json + one weights.bin), so everything that reads a
        // published tfjs version (the server, a pipeline's evaluation of its champion) reads this one too.
        const { text, weights } = await readTfjsFolder(read, artifactUri);
        const modelJson = JSON.parse(text) as { weightsManifest: { weights: unknown[] }[] };
        const manifest = [{ paths: [WEIGHTS_FILE], weights: modelJson.weightsManifest.flatMap((g) => g.weights) }];
        files['model.json'] = JSON.stringify({ ...modelJson, weightsManifest: manifest });
        files[WEIGHTS_FILE] = weights;
      } else {
        for (const file of inspection.files) if (file.name !== METADATA_FILE) files[file.name] = await read(file.name);
      }
      const signatureOf = (tensors: ImportInspection['inputs']) =>
        Object.fromEntries(tensors.map((t) => [t.key, { dtype: t.dtype, shape: t.shape }]));
      const metadata = {
        model,
        version,
        runId: importId,
        imported: { format: inspection.format, signature: inspection.signature },
        ...(inspection.format === 'tfjs'
          ? { signature: { inputs: signatureOf(inspection.inputs), outputs: signatureOf(inspection.outputs) } }
          : {}),
        metrics: evaluation.evaluation?.candidate ?? null,
        reasons: evaluation.reasons,
        gitCommit: deps.gitCommit,
      };
      const publishedPath = await new ModelRepository(deps.home.modelRepositoryDir).publish(model, version, {
        ...files,
        [METADATA_FILE]: JSON.stringify(metadata, null, 2),
      });
      // No alias moves: an import reaches traffic through a rollout or `gantry promote`, like a pipeline with one.
      await registryHandle(deps.client, model).executeUpdate(publishVersionUpdate, {
        args: [{ version, publishedPath, alias: null }],
      });
      return { publishedPath };
    },
  };
}
