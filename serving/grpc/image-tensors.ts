import { z } from 'zod';
import { describeIssues } from '../../validation/issues';
import { invalidArgument } from '../errors';
import { dimsOf, TensorShapeSchema } from './tensor-proto';
import { imagesFromStrings, type EncodedImage, type ImageInputs, type ImageLimits } from '../images';

/**
 * Encoded images over gRPC Predict, as TF Serving takes them for a model whose input is a string: one DT_STRING
 * tensor of shape [N] or [N, 1] under the model's input name or "image", each `string_val` one PNG or JPEG file's
 * bytes. Decoded by serving/images.ts; answered with `scores` + `class` (a classifier) or `value`.
 */

const ImageTensorSchema = z
  .object({
    dtype: z.string(),
    tensor_shape: TensorShapeSchema,
    string_val: z.array(z.instanceof(Uint8Array)).optional(),
  })
  .loose();

/** The request's images, or undefined when it is not an images request (one DT_STRING tensor under a known name). */
export function imagesFromTensors(
  inputs: Record<string, unknown>,
  images: ImageInputs,
  limits: ImageLimits,
  maxRows: number,
): EncodedImage[] | undefined {
  const keys = Object.keys(inputs);
  if (keys.length !== 1 || !images.names.includes(keys[0]!)) return undefined;
  const name = keys[0]!;
  const raw = inputs[name];
  if (typeof raw !== 'object' || raw === null || (raw as { dtype?: unknown }).dtype !== 'DT_STRING') return undefined;
  const where = `inputs.${name}`;
  const parsed = ImageTensorSchema.safeParse(raw);
  if (!parsed.success) throw invalidArgument(`${where}: not a TensorProto: ${describeIssues(parsed.error.issues)}`);
  const proto = parsed.data;
  const dims = dimsOf(proto.tensor_shape);
  const rows = dims[0];
  if (rows === undefined || dims.length > 2 || (dims.length === 2 && dims[1] !== 1) || !Number.isInteger(rows))
    throw invalidArgument(`${where}: shape [${dims.join(', ')}]; images are [N] or [N, 1], one encoded image each`);
  const values = proto.string_val ?? [];
  if (values.length !== rows) throw invalidArgument(`${where}: ${values.length} string_val for ${rows} images`);
  return imagesFromStrings(values, name, limits, maxRows);
}
