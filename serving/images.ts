import { decodeImageBytes, ImageDecodeError, looksLikeImage } from '../data/image-decode';
import type { ImagePreprocessing } from '../data/preprocessing';
import { invalidArgument } from './errors';
import { recordOutputsOf, type RecordOutputs } from './records';
import { rowSize, type Signature, type TensorSpec } from './signature';
import type { DenseTensor } from './tensors';

/**
 * Encoded images in, the model's pixels out: a version published with an image `preprocessing.json` takes PNG and
 * JPEG bytes the TF Serving way — `{"b64": "…"}` values over REST, a DT_STRING tensor over gRPC — under the model's
 * input name or under IMAGE_INPUT. Each image is decoded, converted to the version's channels and resized to its
 * height × width by data/image-decode.ts, the function the image-folder ingest used for the training images, and fed
 * to the model as raw 0..255 float32 pixels (Gantry's image models rescale inside the graph). The answer names the
 * class beside the scores, as a records request's does (serving/records.ts RecordAnswer).
 *
 * A request is one of images when its values are named IMAGE_INPUT or its first value is b64 bytes with a PNG or JPEG
 * signature; other b64 values keep their old meaning (a tensor's raw float32 bytes), so a client that sent raw
 * tensors is answered as before.
 * Sizes are bounded before anything is
 * decoded: the images per request (the server's row limit), the bytes per image and per request, and the pixels an
 * image declares (libvips refuses a decompression bomb before allocating it).
 */

/** The input name an image is sent under besides the model's own input name. */
export const IMAGE_INPUT = 'image';

export interface ImageLimits {
  /** Encoded bytes of one image. */
  maxImageBytes: number;
  /** Encoded bytes of all the images of one request. */
  maxRequestBytes: number;
  /** Pixels one image may declare (width × height before resizing). */
  maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = {
  maxImageBytes: 4 * 1024 * 1024,
  maxRequestBytes: 12 * 1024 * 1024,
  maxPixels: 25_000_000,
};

/** Images decoded at once per request: libvips has its own threads, this keeps a few in flight, not hundreds. */
const DECODE_CONCURRENCY = 4;

/** What a version that takes encoded images carries beside its signature (built once, at load). */
export interface ImageInputs {
  preprocessing: ImagePreprocessing;
  /** The model's one input, fed height × width × channels float32 pixels per image. */
  input: TensorSpec;
  /** The names a request may send images under: the model's input name and IMAGE_INPUT. */
  names: string[];
  outputs: RecordOutputs;
}

/**
 * Checks that `preprocessing` fits the model (one float32 input of height × width × channels values per row, an
 * output per class or one value); throws with a message the version's error shows.
 */
export function imageInputsOf(preprocessing: ImagePreprocessing, signature: Signature): ImageInputs {
  const { height, width, channels } = preprocessing;
  const input = signature.inputs.length === 1 ? signature.inputs[0]! : undefined;
  if (!input || input.dtype !== 'float32' || rowSize(input) !== height * width * channels)
    throw new Error(
      `an image decodes to ${height}x${width}x${channels} float32 values, but the model's inputs are ` +
        `${signature.inputs.map((s) => `${s.key} ${s.dtype} [${s.shape.join(', ')}]`).join('; ')}`,
    );
  const outputs = recordOutputsOf(preprocessing.label, signature);
  return { preprocessing, input, names: [...new Set([input.key, IMAGE_INPUT])], outputs };
}

/** One image of a request, still encoded: where it sits (for errors) and its bytes. */
export interface EncodedImage {
  where: string;
  bytes: Uint8Array;
}

function isB64(value: unknown): value is { b64: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { b64?: unknown }).b64 === 'string' &&
    Object.keys(value).length === 1
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The b64 value of a row instance (`{"b64"}` or `{"image": {"b64"}}`), or undefined when it is neither. */
function b64Of(instance: unknown, images: ImageInputs): { b64: string; name?: string } | undefined {
  if (isB64(instance)) return instance;
  if (!isPlainObject(instance)) return undefined;
  const keys = Object.keys(instance);
  if (keys.length !== 1 || !images.names.includes(keys[0]!)) return undefined;
  const value = instance[keys[0]!];
  return isB64(value) ? { b64: value.b64, name: keys[0]! } : undefined;
}

/** Whether base64 `text` starts with a PNG or JPEG signature (only its first 12 characters decoded). */
function isEncodedImage(text: string): boolean {
  return looksLikeImage(Buffer.from(text.slice(0, 12), 'base64'));
}

/** Whether `name` is IMAGE_INPUT and not the model's input name (a tensor could not be sent under it). */
function namedImage(name: string | undefined, images: ImageInputs): boolean {
  return name === IMAGE_INPUT && images.input.key !== IMAGE_INPUT;
}

function keyOf(inputs: unknown): string | undefined {
  return isPlainObject(inputs) ? Object.keys(inputs)[0] : undefined;
}

/** Counts the encoded bytes of a request's images against the limits, before any base64 is decoded. */
class ByteBudget {
  private total = 0;
  constructor(private readonly limits: ImageLimits) {}

  /** `text`'s bytes once decoded (base64 holds 3 bytes in 4 characters), checked; then the bytes themselves. */
  take(text: string, where: string): Uint8Array {
    const bytes = Math.floor((text.length * 3) / 4);
    if (bytes > this.limits.maxImageBytes)
      throw invalidArgument(
        `${where}: the image is about ${bytes} bytes, over the limit of ${this.limits.maxImageBytes} bytes per image`,
      );
    this.total += bytes;
    if (this.total > this.limits.maxRequestBytes)
      throw invalidArgument(
        `${where}: the request's images add up to over ${this.limits.maxRequestBytes} bytes, the limit per request; ` +
          'send fewer images per request',
      );
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw invalidArgument(`${where}: "b64" is not base64`);
    const decoded = Buffer.from(text, 'base64');
    if (decoded.length === 0) throw invalidArgument(`${where}: the image is empty`);
    return decoded;
  }

  /** Bytes already decoded (a gRPC string_val), checked. */
  check(bytes: Uint8Array, where: string): Uint8Array {
    if (bytes.byteLength > this.limits.maxImageBytes)
      throw invalidArgument(
        `${where}: the image is ${bytes.byteLength} bytes, over the limit of ${this.limits.maxImageBytes} bytes per ` +
          'image',
      );
    this.total += bytes.byteLength;
    if (this.total > this.limits.maxRequestBytes)
      throw invalidArgument(
        `${where}: the request's images add up to over ${this.limits.maxRequestBytes} bytes, the limit per request; ` +
          'send fewer images per request',
      );
    if (bytes.byteLength === 0) throw invalidArgument(`${where}: the image is empty`);
    return bytes;
  }
}

function checkCount(rows: number, maxRows: number, where: string): void {
  if (rows === 0) throw invalidArgument(`${where}: must hold at least one image`);
  if (rows > maxRows) throw invalidArgument(`${where}: ${rows} images exceed the limit of ${maxRows} per request`);
}

/**
 * The row format's images, or undefined when the request is not one (its first instance is no b64 value): every
 * instance `{"b64": …}`, or `{"<name>": {"b64": …}}` with a name of `images.names`.
 */
export function imagesFromInstances(
  instances: unknown[],
  images: ImageInputs,
  limits: ImageLimits,
  maxRows: number,
): EncodedImage[] | undefined {
  const first = instances.length > 0 ? b64Of(instances[0], images) : undefined;
  if (!first || !(isEncodedImage(first.b64) || namedImage(first.name, images))) return undefined;
  checkCount(instances.length, maxRows, 'instances');
  const budget = new ByteBudget(limits);
  return instances.map((instance, r) => {
    const value = b64Of(instance, images);
    if (!value)
      throw invalidArgument(
        `instances[${r}]: expected an image like instances[0]: {"b64": "…"} or ` +
          `${images.names.map((n) => `{"${n}": {"b64": "…"}}`).join(' or ')}`,
      );
    const where = value.name ? `instances[${r}].${value.name}` : `instances[${r}]`;
    return { where, bytes: budget.take(value.b64, where) };
  });
}

/**
 * The columnar format's images, or undefined when the request is not one: `inputs` is an array of `{"b64": …}`, or
 * an object whose one key, a name of `images.names`, holds such an array.
 */
export function imagesFromColumns(
  inputs: unknown,
  images: ImageInputs,
  limits: ImageLimits,
  maxRows: number,
): EncodedImage[] | undefined {
  let array: unknown;
  let where = 'inputs';
  if (Array.isArray(inputs)) array = inputs;
  else if (isPlainObject(inputs)) {
    const keys = Object.keys(inputs);
    if (keys.length !== 1 || !images.names.includes(keys[0]!)) return undefined;
    array = inputs[keys[0]!];
    where = `inputs.${keys[0]!}`;
  }
  if (!Array.isArray(array) || array.length === 0 || !isB64(array[0])) return undefined;
  if (!(isEncodedImage(array[0].b64) || namedImage(keyOf(inputs), images))) return undefined;
  checkCount(array.length, maxRows, where);
  const budget = new ByteBudget(limits);
  return array.map((value, r) => {
    if (!isB64(value)) throw invalidArgument(`${where}[${r}]: expected an image like ${where}[0]: {"b64": "…"}`);
    return { where: `${where}[${r}]`, bytes: budget.take(value.b64, `${where}[${r}]`) };
  });
}

/** gRPC's images: `values` are the string_val of a DT_STRING tensor under `name`, each an encoded image. */
export function imagesFromStrings(
  values: readonly Uint8Array[],
  name: string,
  limits: ImageLimits,
  maxRows: number,
): EncodedImage[] {
  const where = `inputs.${name}`;
  checkCount(values.length, maxRows, where);
  const budget = new ByteBudget(limits);
  return values.map((bytes, r) => ({
    where: `${where}.string_val[${r}]`,
    bytes: budget.check(bytes, `${where}.string_val[${r}]`),
  }));
}

/**
 * Decodes the images (a few at a time, off the event loop) into the model's input: one float32 tensor of the input's
 * shape, raw 0..255 pixels.
 */
export async function decodeImages(
  encoded: readonly EncodedImage[],
  images: ImageInputs,
  limits: ImageLimits,
): Promise<DenseTensor[]> {
  const { input, preprocessing } = images;
  const size = rowSize(input);
  const rows = encoded.length;
  const data = new Float32Array(rows * size);
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < rows && failed === undefined) {
      const r = next++;
      const { where, bytes } = encoded[r]!;
      try {
        const pixels = await decodeImageBytes(bytes, preprocessing, limits.maxPixels);
        for (let i = 0; i < size; i++) data[r * size + i] = pixels[i]!;
      } catch (error) {
        failed ??=
          error instanceof ImageDecodeError
            ? invalidArgument(
                `${where}: not an image the server can read (PNG or JPEG, at most ${limits.maxPixels} pixels): ` +
                  error.message,
              )
            : error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, rows) }, worker));
  if (failed !== undefined) throw failed;
  return [{ dtype: 'float32', shape: [rows, ...input.shape.slice(1)], data }];
}
