import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import { METADATA_FILE } from '../artifacts/model-repository';
import { tf } from '../engine/backend';
import { deserializeModel } from '../engine/model-files';
import { PREPROCESSING_FILE, PreprocessingSchema, type Preprocessing } from '../data/preprocessing';
import { describeIssues } from '../validation/issues';
import { SAVED_MODEL_FILE } from '../engine/saved-model';
import { loadPredictGraph } from './graph-predict';
import { imageInputsOf } from './images';
import { decodePredictInputs } from './grpc/tensor-proto';
import { loadSavedModelServable } from './saved-model-servable';
import { readWarmupRequests, WARMUP_RECORDS_FILE } from './warmup-records';
import { recordInputsOf } from './records';
import { signatureOf, takesExamples, VersionMetadataSchema, type Signature, type VersionMetadata } from './signature';
import { allocate, isStringSpec, parsePredictBody, PredictBodySchema, stringTensor, type DenseTensor } from './tensors';

/**
 * The loader: turns one version folder into a servable and back. A version folder holds a
 * TensorFlow.js layers model (`model.json` + the weight files its manifest names — Gantry's
 * publish step writes `weights.bin`, tfjs's own save writes shards) and optionally Gantry's
 * `gantry.json`, `warmup.json` and `preprocessing.json` (what the server applies to raw records,
 * serving/records.ts; a bad one puts the version in error, naming the file). Loading runs the
 * warm-up before the version may turn AVAILABLE, so a model that cannot run on its own signature
 * fails here, not on a request. A folder without model.json but with `saved_model.pb` holds a TensorFlow
 * SavedModel instead (serving/saved-model-servable.ts; its warm-up also replays TF Serving's
 * assets.extra/tf_serving_warmup_requests).
 */

export const WARMUP_FILE = 'warmup.json';

const WarmupFileSchema = z.object({ requests: z.array(PredictBodySchema).min(1).max(100) }).strict();

export interface Servable {
  signature: Signature;
  metadata: VersionMetadata;
  /** The version's preprocessing.json, when it has one (a tabular one also sets signature.records). */
  preprocessing?: Preprocessing;
  /** Bytes of weights held (for the loaded-bytes gauge). */
  weightBytes: number;
  /** How `run` executes: one TensorFlow graph session, or tfjs's eager ops (and why). */
  execution: { mode: 'graph' } | { mode: 'eager'; reason: string };
  /** One synchronous forward pass over a batch (inputs in signature order). */
  run(inputs: DenseTensor[]): DenseTensor[];
  /** Frees the model's tensors; the servable is unusable afterwards. */
  dispose(): void;
  /**
   * A SavedModel's signatures other than `signature`, by name (`signature_name` picks one). They run
   * unbatched: the batcher merges rows of one signature.
   */
  otherSignatures?: ReadonlyMap<string, OtherSignature>;
}

export interface OtherSignature {
  signature: Signature;
  run(inputs: DenseTensor[]): DenseTensor[];
}

/** A string that changes whenever the folder's files change (names, sizes, mtimes). */
export async function folderFingerprint(dir: string): Promise<string> {
  const entries = await readdir(dir, { withFileTypes: true });
  const parts: string[] = [];
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    // A SavedModel's weights live in variables/: a changed checkpoint is a changed version.
    if (entry.isDirectory() && entry.name === 'variables') {
      parts.push(`variables/(${await folderFingerprint(path.join(dir, entry.name))})`);
      continue;
    }
    if (!entry.isFile()) continue;
    const info = await stat(path.join(dir, entry.name));
    parts.push(`${entry.name}:${info.size}:${info.mtimeMs}`);
  }
  return parts.join('|');
}

/** A file the manifest names, refused when the name would leave the version folder. */
function weightFile(dir: string, name: string): string {
  const resolved = path.resolve(dir, name);
  if (path.dirname(resolved) !== path.resolve(dir))
    throw new Error(`model.json names weight file ${JSON.stringify(name)} outside its folder`);
  return resolved;
}

async function readMetadata(dir: string): Promise<VersionMetadata> {
  const text = await readFile(path.join(dir, METADATA_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`${METADATA_FILE} is not JSON: ${(error as Error).message}`);
  }
  const parsed = VersionMetadataSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${METADATA_FILE}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** Larger than any real one (10,000 columns, vocabularies of 100,000): read no further. */
export const MAX_PREPROCESSING_BYTES = 64 * 1024 * 1024;

/** The version's preprocessing.json (undefined when it has none); anything wrong with it fails the load. */
export async function readPreprocessing(dir: string): Promise<Preprocessing | undefined> {
  const file = path.join(dir, PREPROCESSING_FILE);
  const info = await stat(file).catch(() => undefined);
  if (!info) return undefined;
  if (!info.isFile()) throw new Error(`${PREPROCESSING_FILE} is not a file`);
  if (info.size > MAX_PREPROCESSING_BYTES)
    throw new Error(`${PREPROCESSING_FILE} is ${info.size} bytes, over the limit of ${MAX_PREPROCESSING_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`${PREPROCESSING_FILE} is not JSON: ${(error as Error).message}`);
  }
  const parsed = PreprocessingSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${PREPROCESSING_FILE}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** The signature with what the preprocessing adds: record inputs (tabular) or image inputs, and the class names. */
function preprocessedSignature(signature: Signature, preprocessing: Preprocessing | undefined): Signature {
  if (!preprocessing) return signature;
  try {
    if (preprocessing.kind === 'tabular') signature.records = recordInputsOf(preprocessing, signature);
    else signature.images = imageInputsOf(preprocessing, signature);
  } catch (error) {
    throw new Error(`${PREPROCESSING_FILE} does not fit the model: ${(error as Error).message}`);
  }
  const { label } = preprocessing;
  if (label.task === 'classification' && signature.classLabels?.length === label.classes.length)
    signature.classLabels = [...label.classes];
  return signature;
}

export async function createServable(
  model: tfType.LayersModel,
  metadata: VersionMetadata = {},
  preprocessing?: Preprocessing,
): Promise<Servable> {
  const signature = preprocessedSignature(signatureOf(model, metadata), preprocessing);
  const outputNames = model.outputs.map((o) => o.name);
  const weightBytes = model.weights.reduce((sum, w) => sum + (w.shape as number[]).reduce((a, b) => a * b, 1) * 4, 0);
  const eager = (inputs: DenseTensor[]): DenseTensor[] => {
    // `execute` is predict's forward pass without its per-call checks and its split into
    // sub-batches of 32: the batcher already decided the batch.
    const outputs = tf.tidy(() => {
      const xs = inputs.map((t) => tf.tensor(t.data, t.shape, t.dtype));
      const ys = model.execute(xs.length === 1 ? xs[0]! : xs, outputNames);
      return Array.isArray(ys) ? ys : [ys];
    });
    try {
      return outputs.map((y, i) => ({
        dtype: signature.outputs[i]!.dtype,
        shape: y.shape,
        data: y.dataSync() as Float32Array | Int32Array,
      }));
    } finally {
      tf.dispose(outputs);
    }
  };
  // The same forward pass as one graph session where the backend and the layers allow (graph-predict.ts).
  const graph = await loadPredictGraph(model, signature, eager);
  const forward = 'unsupported' in graph ? eager : (inputs: DenseTensor[]) => graph.run(inputs);
  let disposed = false;
  return {
    signature,
    metadata,
    preprocessing,
    weightBytes,
    execution: 'unsupported' in graph ? { mode: 'eager', reason: graph.unsupported } : { mode: 'graph' },
    run(inputs) {
      if (disposed) throw new Error('the version was unloaded');
      return forward(inputs);
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      if (!('unsupported' in graph)) graph.dispose();
      model.dispose();
    },
  };
}

export interface LoadOptions {
  /** Run one all-zeros row through the model before it turns AVAILABLE. */
  warmup: boolean;
}

/**
 * A version folder's servable: a tfjs layers model when it has model.json (also when it holds a
 * SavedModel too, as Gantry's published versions do), else a TensorFlow SavedModel when it has
 * saved_model.pb (serving/saved-model-servable.ts).
 */
export async function loadServable(dir: string, options: LoadOptions): Promise<Servable> {
  const has = (name: string) =>
    stat(path.join(dir, name)).then(
      (info) => info.isFile(),
      () => false,
    );
  if (!(await has('model.json'))) {
    if (!(await has(SAVED_MODEL_FILE)))
      throw new Error(`no model.json (a TensorFlow.js model) nor ${SAVED_MODEL_FILE} (a SavedModel) in ${dir}`);
    const servable = await loadSavedModelServable(dir, await readMetadata(dir));
    try {
      await warmUpSavedModel(dir, servable, options);
    } catch (error) {
      servable.dispose();
      throw new Error(`warm-up failed: ${(error as Error).message}`);
    }
    return servable;
  }
  const modelJsonText = await readFile(path.join(dir, 'model.json'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new Error(error.code === 'ENOENT' ? `no model.json in ${dir}` : `cannot read model.json: ${error.message}`);
  });
  let manifest: { weightsManifest?: { paths?: unknown }[] };
  try {
    manifest = JSON.parse(modelJsonText) as typeof manifest;
  } catch (error) {
    throw new Error(`model.json is not JSON: ${(error as Error).message}`);
  }
  const paths = (manifest.weightsManifest ?? []).flatMap((group) => (Array.isArray(group.paths) ? group.paths : []));
  if (!paths.every((p): p is string => typeof p === 'string'))
    throw new Error('model.json: weightsManifest paths must be strings');
  // tfjs concatenates the weight files in manifest order into one buffer.
  const chunks = await Promise.all(
    paths.map((p) =>
      readFile(weightFile(dir, p)).catch((error: Error) =>
        Promise.reject(new Error(`cannot read weight file ${p}: ${error.message}`)),
      ),
    ),
  );
  const weights = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const metadata = await readMetadata(dir);
  const preprocessing = await readPreprocessing(dir);
  const model = await deserializeModel(modelJsonText, weights);
  let servable: Servable;
  try {
    servable = await createServable(model, metadata, preprocessing);
  } catch (error) {
    model.dispose();
    throw error;
  }
  try {
    await warmUp(dir, servable, options);
  } catch (error) {
    servable.dispose();
    throw new Error(`warm-up failed: ${(error as Error).message}`);
  }
  return servable;
}

/**
 * A SavedModel's warm-up: TF Serving's assets.extra/tf_serving_warmup_requests when it has one (each
 * PredictRequest replayed on its signature), else Gantry's warmup.json or one zeros row as for tfjs.
 */
async function warmUpSavedModel(dir: string, servable: Servable, options: LoadOptions): Promise<void> {
  const requests = await readWarmupRequests(dir);
  if (requests) {
    for (const [i, request] of requests.entries()) {
      const name = request.signatureName || servable.signature.name;
      const target = name === servable.signature.name ? servable : servable.otherSignatures?.get(name);
      const where = `${WARMUP_RECORDS_FILE} record ${i}`;
      if (!target) throw new Error(`${where}: the model has no signature "${name}"`);
      if (target.signature.unsupported) throw new Error(`${where}: ${target.signature.unsupported}`);
      target.run(decodePredictInputs(request.inputs, target.signature, 100_000));
    }
    return;
  }
  // An empty tf.Example need not parse (required features): example signatures warm up from the file only.
  if (servable.signature.unsupported || takesExamples(servable.signature)) return;
  await warmUp(dir, servable, options);
}

async function warmUp(dir: string, servable: Servable, options: LoadOptions): Promise<void> {
  const text = await readFile(path.join(dir, WARMUP_FILE), 'utf8').catch(() => undefined);
  const { signature } = servable;
  if (text !== undefined) {
    const parsed = WarmupFileSchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`${WARMUP_FILE}: ${describeIssues(parsed.error.issues)}`);
    for (const request of parsed.data.requests) servable.run(parsePredictBody(request, signature, 100_000).inputs);
  } else if (options.warmup) {
    servable.run(
      signature.inputs.map((spec): DenseTensor => {
        const shape = [1, ...spec.shape.slice(1)];
        if (isStringSpec(spec))
          return stringTensor(
            shape,
            Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => new Uint8Array(0)),
          );
        return {
          dtype: spec.dtype,
          shape,
          data: allocate(
            spec.dtype,
            shape.reduce((a, b) => a * b, 1),
          ),
        };
      }),
    );
  }
}
