import sharp from 'sharp';

/**
 * One encoded image (PNG or JPEG bytes) to the pixels a model takes: decoded and resized with sharp (libvips),
 * stretched to height × width as Keras does by default (no crop, no padding), converted to `channels` (1: greyscale
 * by luminance, 3: sRGB), as height × width × channels bytes (row-major, channels last, 0..255). The image-folder
 * source decodes every file with it at ingest and the model server decodes every `{"b64": …}` image with it, so
 * training and serving cannot disagree about the pixels.
 *
 * Alpha is dropped, not composited: a transparent pixel reads as the colour stored under it (black in most
 * encoders). EXIF orientation is applied first, so a phone photo is upright as its viewer shows it. The work runs
 * on libuv's thread pool: the event loop is never blocked by a decode.
 */

export interface DecodeShape {
  height: number;
  width: number;
  channels: 1 | 3;
}

/** sharp's own names of the formats accepted: bytes that are really an SVG or a TIFF are refused, not rendered. */
const ACCEPTED_FORMATS = new Set(['png', 'jpeg']);
/** libvips refuses to decode more pixels than this (a decompression bomb declares a huge size in a tiny file). */
export const MAX_IMAGE_INPUT_PIXELS = 100_000_000;

/** Why an image could not be decoded: one line (libvips' own messages run over several). */
export class ImageDecodeError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ImageDecodeError';
  }
}

/** libvips' messages run over several lines; the first says what is wrong. */
function firstLine(error: unknown): string {
  return ((error as Error).message ?? String(error)).split('\n')[0]!.trim();
}

/** Whether `bytes` start with the PNG signature or JPEG's start-of-image marker (no decoding). */
export function looksLikeImage(bytes: Uint8Array): boolean {
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length >= 8 && png.every((b, i) => bytes[i] === b)) return true;
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * Decodes `bytes` to `shape`; throws ImageDecodeError (one line) for anything that is not a PNG or JPEG that
 * libvips reads whole, or that declares more than `maxPixels` pixels.
 */
export async function decodeImageBytes(
  bytes: Uint8Array,
  shape: DecodeShape,
  maxPixels = MAX_IMAGE_INPUT_PIXELS,
): Promise<Buffer> {
  const options = { limitInputPixels: maxPixels, failOn: 'error' as const };
  try {
    const { format } = await sharp(bytes, options).metadata();
    if (!format || !ACCEPTED_FORMATS.has(format))
      throw new Error(`is ${format ?? 'an unknown format'}, not PNG or JPEG`);
    // rotate() with no angle applies the EXIF orientation.
    let pipeline = sharp(bytes, options).rotate().resize(shape.width, shape.height, { fit: 'fill' });
    pipeline = shape.channels === 1 ? pipeline.grayscale() : pipeline.toColourspace('srgb');
    const { data, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const expected = shape.height * shape.width * shape.channels;
    if (info.channels !== shape.channels || data.length !== expected)
      throw new Error(
        `decoded to ${info.width}x${info.height}x${info.channels}, expected ` +
          `${shape.width}x${shape.height}x${shape.channels}`,
      );
    return data;
  } catch (error) {
    throw new ImageDecodeError(firstLine(error));
  }
}
