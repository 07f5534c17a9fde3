import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import type { ImageInputs } from './images';
import type { RecordInputs } from './records';

/**
 * A version's signature, read from the layers model itself so that any tfjs layers model
 * dropped into the repository serves without extra files. One signature, `serving_default`
 * (a layers model has one forward pass). Tensor keys are the input layers' and output layers'
 * names; a Gantry-published version names them in its `gantry.json` (`input` and
 * `probabilities`), which wins when the arity matches. REST and gRPC use the same keys.
 */

// TF Serving's default signature name: one definition, the engine's, which reads and writes SavedModels.
import { DEFAULT_SIGNATURE } from '../engine/saved-model';

export { DEFAULT_SIGNATURE };
export const PREDICT_METHOD = 'tensorflow/serving/predict';
/** A SavedModel's classification and regression signatures (estimator and TFX exports): tf.Examples in. */
export const CLASSIFY_METHOD = 'tensorflow/serving/classify';
export const REGRESS_METHOD = 'tensorflow/serving/regress';

export type ServedDType = 'float32' | 'int32';

export interface TensorSpec {
  /** The alias clients use (TF Serving's signature key). */
  key: string;
  /** The tensor's name in the graph (reported as TensorInfo.name). */
  tensorName: string;
  dtype: ServedDType;
  /** -1 where the model accepts any size (the batch dimension). */
  shape: number[];
  /**
   * A SavedModel's own dtype (DT_INT64, DT_BOOL, DT_DOUBLE, …) where it is not `dtype`'s: metadata reports it and
   * gRPC accepts it; the values still travel as `dtype` (serving/saved-model-servable.ts).
   */
  tfDType?: string;
}

export interface Signature {
  name: string;
  methodName: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /**
   * Present when the model is a classifier (one output of shape [-1, K], K ≥ 2):
   * the label of each column, from gantry.json's classNames or the column index.
   */
  classLabels?: string[];
  /** Present when the version takes raw records (a tabular preprocessing.json): REST/gRPC encode them. */
  records?: RecordInputs;
  /** Present when the version takes encoded images (an image preprocessing.json): REST/gRPC decode them. */
  images?: ImageInputs;
  /**
   * A SavedModel classify/regress signature's tf.Example features (from the graph's ParseExample ops) and the
   * list each wants, so a JSON number becomes the float_list or int64_list the model parses.
   */
  exampleFeatures?: Record<string, 'float' | 'int64' | 'bytes'>;
  /** Why calls to this signature are refused (UNIMPLEMENTED): a SavedModel's dtype or shape Gantry cannot carry. */
  unsupported?: string;
}

/** What Gantry's publish step writes beside the model; every field optional (plain tfjs models have none). */
export const VersionMetadataSchema = z
  .object({
    signature: z
      .object({
        inputs: z.record(z.string(), z.unknown()).optional(),
        outputs: z.record(z.string(), z.unknown()).optional(),
      })
      .partial()
      .optional(),
    classNames: z.array(z.string()).optional(),
  })
  .loose();
export type VersionMetadata = z.infer<typeof VersionMetadataSchema>;

const KEY_PATTERN = /^[A-Za-z0-9_.\-/]+$/;

function servedDType(dtype: string, where: string): ServedDType {
  if (dtype === 'float32' || dtype === 'int32') return dtype;
  throw new Error(`${where} has dtype ${dtype}; the server feeds float32 and int32 tensors only`);
}

function aliases(fromMetadata: Record<string, unknown> | undefined, count: number): string[] | undefined {
  const keys = fromMetadata ? Object.keys(fromMetadata) : [];
  return keys.length === count && keys.every((k) => KEY_PATTERN.test(k)) ? keys : undefined;
}

export function signatureOf(model: tfType.LayersModel, metadata: VersionMetadata = {}): Signature {
  const inputAliases = aliases(metadata.signature?.inputs, model.inputs.length);
  const outputAliases = aliases(metadata.signature?.outputs, model.outputs.length);
  const inputs = model.inputs.map((t, i) => ({
    key: inputAliases?.[i] ?? t.sourceLayer.name,
    tensorName: t.name,
    dtype: servedDType(t.dtype, `input ${t.name}`),
    shape: t.shape.map((d) => d ?? -1),
  }));
  const outputs = model.outputs.map((t, i) => ({
    key: outputAliases?.[i] ?? t.sourceLayer.name,
    tensorName: t.name,
    dtype: servedDType(t.dtype, `output ${t.name}`),
    shape: t.shape.map((d) => d ?? -1),
  }));
  for (const group of [inputs, outputs]) {
    const keys = new Set(group.map((s) => s.key));
    if (keys.size !== group.length)
      throw new Error(
        `the model's ${group === inputs ? 'input' : 'output'} names are not distinct: ` +
          `${group.map((s) => s.key).join(', ')}`,
      );
  }
  for (const input of inputs) {
    if (input.shape[0] !== -1)
      throw new Error(
        `input ${input.key} has a fixed batch size ${input.shape[0]}; the server needs a free batch dimension`,
      );
    if (input.shape.slice(1).some((d) => d < 1))
      throw new Error(`input ${input.key} has shape [${input.shape}]; only the batch dimension may be unknown`);
  }
  const signature: Signature = { name: DEFAULT_SIGNATURE, methodName: PREDICT_METHOD, inputs, outputs };
  const only = outputs.length === 1 ? outputs[0]! : undefined;
  const classes = only && only.shape.length === 2 ? only.shape[1]! : 0;
  if (classes >= 2) {
    const names = metadata.classNames;
    signature.classLabels =
      names && names.length === classes ? [...names] : Array.from({ length: classes }, (_, i) => String(i));
  }
  return signature;
}

/** Elements in one row of a tensor of this spec (its shape without the batch dimension). */
export function rowSize(spec: TensorSpec): number {
  return spec.shape.slice(1).reduce((a, b) => a * b, 1);
}

/** Whether the signature is a classify or regress one over serialized tf.Examples (its one DT_STRING input). */
export function takesExamples(signature: Signature): boolean {
  return (
    (signature.methodName === CLASSIFY_METHOD || signature.methodName === REGRESS_METHOD) &&
    signature.inputs.length === 1 &&
    signature.inputs[0]!.tfDType === 'DT_STRING'
  );
}
