import type * as tfType from '@tensorflow/tfjs';
import { compileInferenceGraph, GraphUnsupported } from './forward-graph';

/**
 * A layers model as a TensorFlow SavedModel that Python TensorFlow (`tf.saved_model.load`) and
 * TensorFlow Serving load as it is: `saved_model.pb` holding the inference graph the model server
 * runs (engine/forward-graph.ts, the weights frozen in as constants, so there is no `variables/`)
 * under the `serve` tag, with the SignatureDef `serving_default` (method Predict) whose keys are the
 * names the tfjs version is served under. Files the SavedModel carries besides (Gantry's
 * preprocessing.json and gantry.json) go to `assets.extra/`, where TF Serving keeps extra files.
 *
 * Pure protobuf: writing needs no native backend. A model the graph compiler does not cover
 * (GraphUnsupported) gets no SavedModel, and the reason says why.
 */

export const SAVED_MODEL_FILE = 'saved_model.pb';
export const SAVED_MODEL_TAG = 'serve';
export const SERVING_SIGNATURE = 'serving_default';
export const PREDICT_METHOD_NAME = 'tensorflow/serving/predict';
/** TensorFlow Serving's folder for files beside the model (its warm-up requests live there too). */
export const ASSETS_EXTRA_DIR = 'assets.extra';

/** Below protobuf's 2 GiB message limit, with room for the graph around the weights. */
const MAX_FROZEN_BYTES = 2 ** 31 - 64 * 2 ** 20;

/** The signature's keys, as the tfjs version is served: one per model input and output, in order. */
export interface SavedModelNames {
  inputs: string[];
  outputs: string[];
}

/** What Gantry's version metadata records about the SavedModel beside the tfjs files. */
export type SavedModelStatus =
  | { written: true; tags: string[]; signature: string }
  | { written: false; reason: string };

function dimsOf(shape: (number | null)[]): number[] {
  return shape.map((d) => d ?? -1);
}

/**
 * `model` as `saved_model.pb` bytes with signature `serving_default` named by `names`. Throws
 * GraphUnsupported for a model the graph compiler does not cover (and for anything the signature
 * cannot say: several inputs or outputs, non-float32 tensors, a fixed batch size).
 */
export function savedModelOf(model: tfType.LayersModel, names: SavedModelNames): Uint8Array {
  const [inputCount, outputCount] = [model.inputs.length, model.outputs.length];
  if (inputCount !== 1 || outputCount !== 1)
    throw new GraphUnsupported(
      `a model with ${inputCount} inputs and ${outputCount} outputs (the graph compiler takes one each)`,
    );
  // The weights are frozen into the one protobuf message, which cannot reach 2 GiB.
  const weightBytes = model.weights.reduce((sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 1), 1) * 4, 0);
  if (weightBytes > MAX_FROZEN_BYTES)
    throw new GraphUnsupported(`${weightBytes} bytes of weights (frozen constants stop at ${MAX_FROZEN_BYTES})`);
  if (names.inputs.length !== 1 || names.outputs.length !== 1)
    throw new Error(`one input and one output name expected, got ${names.inputs.length} and ${names.outputs.length}`);
  const [input, output] = [model.inputs[0]!, model.outputs[0]!];
  if (input.dtype !== 'float32' || output.dtype !== 'float32')
    throw new GraphUnsupported(`a ${input.dtype} input or a ${output.dtype} output (only float32 compiles)`);
  const inputDims = dimsOf(input.shape);
  const outputDims = dimsOf(output.shape);
  if (inputDims[0] !== -1) throw new GraphUnsupported(`a fixed batch size of ${inputDims[0]}`);
  if (inputDims.slice(1).some((d) => d < 1))
    throw new GraphUnsupported(`input shape [${inputDims}] (only the batch dimension may be unknown)`);
  const compiled = compileInferenceGraph(model, inputDims);
  const expected = outputDims.slice(1);
  if (compiled.shape.length !== expected.length || compiled.shape.some((d, i) => d !== expected[i]))
    throw new GraphUnsupported(`the compiled output shape [${compiled.shape}] differs from the model's [${expected}]`);
  return compiled.graph.savedModel([SAVED_MODEL_TAG], {
    [SERVING_SIGNATURE]: {
      methodName: PREDICT_METHOD_NAME,
      inputs: { [names.inputs[0]!]: { name: `${compiled.input}:0`, dtype: 'DT_FLOAT', shape: inputDims } },
      outputs: { [names.outputs[0]!]: { name: `${compiled.output}:0`, dtype: 'DT_FLOAT', shape: outputDims } },
    },
  });
}

/**
 * `model`'s SavedModel bytes and the status gantry.json records; for a model the compiler does not
 * cover, no bytes and the reason (never an error: the tfjs files are published all the same).
 */
export function compileSavedModel(
  model: tfType.LayersModel,
  names: SavedModelNames,
): { bytes: Uint8Array; status: SavedModelStatus } | { bytes?: undefined; status: SavedModelStatus } {
  try {
    const bytes = savedModelOf(model, names);
    return { bytes, status: { written: true, tags: [SAVED_MODEL_TAG], signature: SERVING_SIGNATURE } };
  } catch (error) {
    if (error instanceof GraphUnsupported) return { status: { written: false, reason: error.message } };
    throw error;
  }
}

/** The SavedModel's files, relative to the version folder: `saved_model.pb` and each of `extras` in `assets.extra/`. */
export function savedModelFiles(
  bytes: Uint8Array,
  extras: Record<string, Uint8Array | string> = {},
): Record<string, Uint8Array | string> {
  const files: Record<string, Uint8Array | string> = { [SAVED_MODEL_FILE]: bytes };
  for (const [name, data] of Object.entries(extras)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name))
      throw new Error(`${ASSETS_EXTRA_DIR} file name ${name} is not a plain name`);
    files[`${ASSETS_EXTRA_DIR}/${name}`] = data;
  }
  return files;
}
