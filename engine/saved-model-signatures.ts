import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';

/**
 * A SavedModel's SignatureDefs read from its saved_model.pb (bounded, parsed with the protobuf messages tfjs-node
 * ships, so no native library is needed to inspect one), and one signature run through tfjs-node's SavedModel
 * binding (native backend only). Used by `gantry models import`; the model server's SavedModel support has its own
 * reader (engine/saved-model.ts) that this should merge into.
 */

/** Larger than any real graph Gantry imports (weights live in variables/): a bigger file is refused unread. */
export const MAX_SAVED_MODEL_PB_BYTES = 512 * 1024 * 1024;
/** TF Serving's tag set for serving, the only one imported. */
export const SERVE_TAG = 'serve';
export const DEFAULT_SIGNATURE = 'serving_default';

export interface TensorInfo {
  /** The signature's key (the name a client uses). */
  key: string;
  /** The graph tensor, e.g. `serving_default_x:0`. */
  tensor: string;
  /** TensorFlow's DataType name, e.g. DT_FLOAT. */
  dtype: string;
  /** -1 for an unknown dimension; null for an unknown rank. */
  shape: number[] | null;
}

export interface SignatureInfo {
  name: string;
  methodName: string;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
}

/** A SavedModel that cannot be read: a missing, oversized or corrupt saved_model.pb, or no such signature. */
export class SavedModelError extends Error {
  override name = 'SavedModelError';
}

interface ProtoMap<V> {
  entries(): Iterable<[string, V]>;
}
interface ProtoTensorInfo {
  getName(): string;
  getDtype(): number;
  getTensorShape(): { getUnknownRank(): boolean; getDimList(): { getSize(): number }[] } | undefined;
}
interface ProtoSavedModel {
  getMetaGraphsList(): {
    getMetaInfoDef(): { getTagsList(): string[] } | undefined;
    getSignatureDefMap(): ProtoMap<{
      getMethodName(): string;
      getInputsMap(): ProtoMap<ProtoTensorInfo>;
      getOutputsMap(): ProtoMap<ProtoTensorInfo>;
    }>;
  }[];
}
interface ProtoModule {
  SavedModel: { deserializeBinary(bytes: Uint8Array): ProtoSavedModel };
  DataType: Record<string, number>;
}

const require = createRequire(import.meta.url);

function protoModule(): ProtoModule {
  try {
    return require('@tensorflow/tfjs-node/dist/proto/api_pb') as ProtoModule;
  } catch (error) {
    throw new SavedModelError(
      `reading a SavedModel needs @tensorflow/tfjs-node's protobuf messages (${(error as Error).message})`,
    );
  }
}

/** Reads `file` whole, refusing one over `limit` bytes before allocating for it. */
async function readBounded(file: string, limit: number): Promise<Buffer> {
  const handle = await open(file, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new SavedModelError(
      error.code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}: ${error.message}`,
    );
  });
  try {
    const { size } = await handle.stat();
    if (size > limit) throw new SavedModelError(`${file} is ${size} bytes; the most Gantry reads is ${limit}`);
    const bytes = Buffer.alloc(size);
    const { bytesRead } = await handle.read(bytes, 0, size, 0);
    if (bytesRead !== size) throw new SavedModelError(`${file} changed while it was read`);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Every signature of the `serve` MetaGraph of the SavedModel in `dir` (TensorFlow's init op left out). */
export async function readServeSignatures(dir: string): Promise<SignatureInfo[]> {
  const file = path.join(dir, 'saved_model.pb');
  const bytes = await readBounded(file, MAX_SAVED_MODEL_PB_BYTES);
  const proto = protoModule();
  let message: ProtoSavedModel;
  try {
    message = proto.SavedModel.deserializeBinary(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (error) {
    // A hostile or truncated file: the parser throws (a deep nesting could overflow the stack), never crashes.
    throw new SavedModelError(`${file} is not a SavedModel: ${(error as Error).message}`);
  }
  const dtypeName = new Map(Object.entries(proto.DataType).map(([name, value]) => [value, name]));
  const tensorInfo = ([key, info]: [string, ProtoTensorInfo]): TensorInfo => {
    const shape = info.getTensorShape();
    return {
      key,
      tensor: info.getName(),
      dtype: dtypeName.get(info.getDtype()) ?? `DT_${info.getDtype()}`,
      shape: !shape || shape.getUnknownRank() ? null : shape.getDimList().map((d) => d.getSize()),
    };
  };
  try {
    const metaGraphs = message.getMetaGraphsList();
    const serve = metaGraphs.find((m) => {
      const tags = m.getMetaInfoDef()?.getTagsList() ?? [];
      return tags.length === 1 && tags[0] === SERVE_TAG;
    });
    if (!serve) {
      const sets = metaGraphs.map((m) => `[${(m.getMetaInfoDef()?.getTagsList() ?? []).join(',')}]`);
      throw new SavedModelError(
        `${file} has no MetaGraph tagged "${SERVE_TAG}" (tag sets: ${sets.join(' ') || 'none'})`,
      );
    }
    return [...serve.getSignatureDefMap().entries()]
      .filter(([name]) => name !== '__saved_model_init_op')
      .map(([name, def]) => ({
        name,
        methodName: def.getMethodName(),
        inputs: [...def.getInputsMap().entries()].map(tensorInfo),
        outputs: [...def.getOutputsMap().entries()].map(tensorInfo),
      }));
  } catch (error) {
    if (error instanceof SavedModelError) throw error;
    throw new SavedModelError(`${file} is not a SavedModel: ${(error as Error).message}`);
  }
}

/** The named signature, or an error listing the ones there are. */
export async function readServeSignature(dir: string, name: string): Promise<SignatureInfo> {
  const signatures = await readServeSignatures(dir);
  const found = signatures.find((s) => s.name === name);
  if (!found) {
    const known = signatures.map((s) => s.name).join(', ') || 'none';
    throw new SavedModelError(`${dir} has no signature "${name}" (signatures: ${known})`);
  }
  return found;
}

/** One loaded signature of a SavedModel: a batch in, the signature's outputs (in signature order) out. */
export interface SavedModelRunner {
  predict(input: tfType.Tensor): tfType.Tensor[];
  dispose(): void;
}

interface TfjsNode {
  node: {
    loadSavedModel(
      dir: string,
      tags: string[],
      signature: string,
    ): Promise<{
      predict(input: tfType.NamedTensorMap): tfType.NamedTensorMap;
      dispose(): void;
    }>;
  };
}

/** Loads `signature` of the SavedModel in `dir` into a libtensorflow session (the native backend only). */
export async function loadSavedModelSignature(dir: string, signature: SignatureInfo): Promise<SavedModelRunner> {
  // Loaded here, not at the top: the CLI reads signatures without loading TensorFlow.js.
  const { tf } = await import('./backend');
  if (tf.getBackend() !== 'tensorflow')
    throw new SavedModelError(
      `running a SavedModel needs the native backend (tfjs-node; run make setup), not ${tf.getBackend()}`,
    );
  const [input] = signature.inputs;
  if (signature.inputs.length !== 1 || !input) throw new SavedModelError('only signatures of one input are run here');
  const node = (require('@tensorflow/tfjs-node') as TfjsNode).node;
  const model = await node.loadSavedModel(dir, [SERVE_TAG], signature.name);
  return {
    predict(batch) {
      const outputs = model.predict({ [input.key]: batch });
      return signature.outputs.map((o) => {
        const tensor = outputs[o.key];
        if (!tensor) throw new SavedModelError(`the SavedModel gave no output "${o.key}"`);
        return tensor;
      });
    },
    dispose: () => model.dispose(),
  };
}
