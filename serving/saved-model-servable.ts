import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  readSavedModel,
  SavedModelSession,
  savedModelsUnavailable,
  type SavedSignature,
  type SavedTensorInfo,
} from '../engine/saved-model';
import type { OtherSignature, Servable } from './loader';
import { invalidArgument, ServingError } from './errors';
import { DEFAULT_SIGNATURE, type Signature, takesExamples, type TensorSpec, type VersionMetadata } from './signature';
import { type DenseTensor, sliceRows } from './tensors';

/**
 * A version folder holding a TensorFlow SavedModel, served like a tfjs one: every signature of its
 * `serve` MetaGraph, `serving_default` the default (the one the batcher, labels, shadow and feedback
 * see), the others by `signature_name`. A signature with a dtype or shape Gantry cannot carry stays
 * listed in the metadata, and its calls answer UNIMPLEMENTED naming the tensor.
 */

const CARRIED =
  'Gantry feeds DT_FLOAT, DT_DOUBLE (as float32), DT_INT32, DT_INT64 (values within the int32 range), DT_BOOL and ' +
  'DT_STRING to a SavedModel';

function spec(info: SavedTensorInfo): TensorSpec {
  // A string tensor's values travel in DenseTensor.strings; its tfDType (DT_STRING) is what says so.
  const dtype = info.dtype === 'string' ? 'int32' : (info.dtype ?? 'float32');
  const own = dtype === 'float32' ? 'DT_FLOAT' : 'DT_INT32';
  return {
    key: info.key,
    tensorName: info.name,
    dtype,
    shape: info.shape ?? [],
    ...(info.tfDType !== own || !info.dtype ? { tfDType: info.tfDType } : {}),
  };
}

/** Why a signature cannot be served, or undefined. */
function unsupportedReason(signature: SavedSignature): string | undefined {
  for (const input of signature.inputs) {
    const where = `signature "${signature.name}": input "${input.key}"`;
    if (!input.name) return `${where} is a sparse or composite tensor; ${CARRIED} as dense tensors only`;
    if (!input.dtype) return `${where} has dtype ${input.tfDType}, which the native binding cannot feed; ${CARRIED}`;
    if (!input.shape) return `${where} has an unknown rank; the server needs a batch-first shape`;
    if (input.shape[0] !== -1) return `${where} has shape [${input.shape}]; the server needs a free batch dimension`;
    if (input.shape.slice(1).some((d) => d < 1))
      return `${where} has shape [${input.shape}]; only the batch dimension may be unknown`;
  }
  for (const output of signature.outputs) {
    const where = `signature "${signature.name}": output "${output.key}"`;
    if (!output.name) return `${where} is a sparse or composite tensor; Gantry answers dense tensors only`;
    if (!output.dtype)
      return (
        `${where} has dtype ${output.tfDType}, which Gantry cannot answer ` +
        '(it reads back DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_BOOL and DT_STRING)'
      );
  }
  if (signature.inputs.length === 0) return `signature "${signature.name}" has no inputs`;
  return undefined;
}

function servingSignature(saved: SavedSignature, metadata: VersionMetadata): Signature {
  const signature: Signature = {
    name: saved.name,
    methodName: saved.methodName,
    inputs: saved.inputs.map(spec),
    outputs: saved.outputs.map(spec),
  };
  const unsupported = unsupportedReason(saved);
  if (unsupported) signature.unsupported = unsupported;
  // A classifier (one float output of [-1, K]) answers :classify and counts its classes, as a tfjs one does.
  const only = signature.outputs.length === 1 ? signature.outputs[0]! : undefined;
  const classes = only && only.dtype === 'float32' && !only.tfDType && only.shape.length === 2 ? only.shape[1]! : 0;
  if (!unsupported && classes >= 2) {
    const names = metadata.classNames;
    signature.classLabels =
      names && names.length === classes ? [...names] : Array.from({ length: classes }, (_, i) => String(i));
  }
  return signature;
}

/**
 * A signature over serialized tf.Examples fails as a whole when one example does not parse (a feature
 * missing or of the wrong type). Then each example is run alone to find the first that fails, and the
 * answer is a 400 naming it; only the failing path pays for the reruns.
 */
function namingTheExample(run: (inputs: DenseTensor[]) => DenseTensor[]) {
  return (inputs: DenseTensor[]): DenseTensor[] => {
    try {
      return run(inputs);
    } catch (error) {
      if (error instanceof ServingError) throw error;
      const rows = inputs[0]!.shape[0]!;
      for (let i = 0; i < rows; i++) {
        try {
          run([sliceRows(inputs[0]!, i, 1)]);
        } catch (one) {
          throw invalidArgument(`examples[${i}]: the model could not parse it: ${(one as Error).message}`);
        }
      }
      throw error;
    }
  };
}

/** Bytes under the folder's variables/ (the weights; the loaded-bytes gauge). */
async function variablesBytes(dir: string): Promise<number> {
  const entries = await readdir(path.join(dir, 'variables'), { withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const entry of entries) if (entry.isFile()) total += (await stat(path.join(dir, 'variables', entry.name))).size;
  return total;
}

export async function loadSavedModelServable(dir: string, metadata: VersionMetadata): Promise<Servable> {
  const info = await readSavedModel(dir);
  // Checked after the parse, so a broken file says so whatever the backend.
  const unavailable = savedModelsUnavailable();
  if (unavailable) throw new Error(unavailable);
  const session = SavedModelSession.open(dir, info.tags);
  const runnerOf = (saved: SavedSignature, signature: Signature) => {
    if (signature.unsupported) {
      const reason = signature.unsupported;
      return (): DenseTensor[] => {
        throw new Error(reason);
      };
    }
    const run = session.runner(saved) as (inputs: DenseTensor[]) => DenseTensor[];
    return takesExamples(signature) ? namingTheExample(run) : run;
  };
  const all = info.signatures.map((saved) => {
    const signature = servingSignature(saved, metadata);
    if (takesExamples(signature) && Object.keys(info.exampleFeatures).length > 0)
      signature.exampleFeatures = info.exampleFeatures;
    return { signature, run: runnerOf(saved, signature) };
  });
  // TF Serving's default; a model without one serves its first signature when none is named.
  const main = all.find((s) => s.signature.name === DEFAULT_SIGNATURE) ?? all[0]!;
  const others = new Map<string, OtherSignature>(all.filter((s) => s !== main).map((s) => [s.signature.name, s]));
  let disposed = false;
  return {
    signature: main.signature,
    otherSignatures: others,
    metadata,
    weightBytes: await variablesBytes(dir),
    execution: { mode: 'graph' },
    run(inputs) {
      if (disposed) throw new Error('the version was unloaded');
      return main.run(inputs);
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      session.close();
    },
  };
}
