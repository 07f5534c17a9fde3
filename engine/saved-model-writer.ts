import type * as tfType from '@tensorflow/tfjs';
import { compileInferenceGraphInputs, GraphUnsupported } from './forward-graph';
import { DEFAULT_SIGNATURE, SAVED_MODEL_FILE, SERVE_TAG } from './saved-model';

/**
 * A layers model as a TensorFlow SavedModel that Python TensorFlow (`tf.saved_model.load`) and
 * TensorFlow Serving load as it is: `saved_model.pb` holding the inference graph the model server
 * runs (engine/forward-graph.ts, the weights frozen in as constants, so there is no `variables/`)
 * under the `serve` tag, with the SignatureDef `serving_default` (method Predict) whose keys are the
 * names the tfjs version is served under. Files the SavedModel carries besides (Gantry's
 * preprocessing.json and gantry.json) go to `assets.extra/`, where TF Serving keeps extra files.
 *
 * A model with several inputs (Gantry's named inputs: `numeric` and one category index per categorical
 * column) gets one signature input per model input, in the model's order, each float32 [-1, k].
 *
 * Pure protobuf: writing needs no native backend. A model the graph compiler does not cover
 * (GraphUnsupported) gets no SavedModel, and the reason says why.
 */

export { SAVED_MODEL_FILE };
// The reader's names (engine/saved-model.ts), so what is written is what is read.
export const SAVED_MODEL_TAG = SERVE_TAG;
export const SERVING_SIGNATURE = DEFAULT_SIGNATURE;
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
 * cannot say: several outputs, non-float32 tensors, a fixed batch size).
 */
export function savedModelOf(model: tfType.LayersModel, names: SavedModelNames): Uint8Array {
  const [inputCount, outputCount] = [model.inputs.length, model.outputs.length];
  if (inputCount < 1 || outputCount !== 1)
    throw new GraphUnsupported(
      `a model with ${inputCount} inputs and ${outputCount} outputs (the graph compiler takes one output)`,
    );
  // The weights are frozen into the one protobuf message, which cannot reach 2 GiB.
  const weightBytes = model.weights.reduce((sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 1), 1) * 4, 0);
  if (weightBytes > MAX_FROZEN_BYTES)
    throw new GraphUnsupported(`${weightBytes} bytes of weights (frozen constants stop at ${MAX_FROZEN_BYTES})`);
  if (names.inputs.length !== inputCount || names.outputs.length !== 1)
    throw new Error(
      `${inputCount} input names and one output name expected, got ${names.inputs.length} and ${names.outputs.length}`,
    );
  if (new Set(names.inputs).size !== inputCount)
    throw new Error(`input names not distinct: ${names.inputs.join(', ')}`);
  const output = model.outputs[0]!;
  const inputDims = model.inputs.map((input, i) => {
    // One input keeps its historical wording; several name the input at fault.
    const which = inputCount === 1 ? 'input' : `input ${names.inputs[i]}`;
    if (input.dtype !== 'float32') throw new GraphUnsupported(`a ${input.dtype} ${which} (only float32 compiles)`);
    const dims = dimsOf(input.shape);
    if (dims[0] !== -1) throw new GraphUnsupported(`a fixed batch size of ${dims[0]}`);
    if (dims.slice(1).some((d) => d < 1))
      throw new GraphUnsupported(`${which} shape [${dims}] (only the batch dimension may be unknown)`);
    return dims;
  });
  if (output.dtype !== 'float32') throw new GraphUnsupported(`a ${output.dtype} output (only float32 compiles)`);
  const outputDims = dimsOf(output.shape);
  const compiled = compileInferenceGraphInputs(model, inputDims);
  const expected = outputDims.slice(1);
  if (compiled.shape.length !== expected.length || compiled.shape.some((d, i) => d !== expected[i]))
    throw new GraphUnsupported(`the compiled output shape [${compiled.shape}] differs from the model's [${expected}]`);
  const inputs = Object.fromEntries(
    compiled.inputs.map((placeholder, i) => [
      names.inputs[i]!,
      { name: `${placeholder}:0`, dtype: 'DT_FLOAT' as const, shape: inputDims[i]! },
    ]),
  );
  return compiled.graph.savedModel([SAVED_MODEL_TAG], {
    [SERVING_SIGNATURE]: {
      methodName: PREDICT_METHOD_NAME,
      inputs,
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
