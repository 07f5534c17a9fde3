import { createReadStream } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createGunzip, gunzip } from 'node:zlib';
import { DatasetError } from './errors';

/**
 * The IDX format (used by MNIST and Fashion-MNIST): a 4-byte magic number `00 00 <type> <ndims>`,
 * then `ndims` big-endian uint32 dimensions, then the data row-major. Only unsigned bytes (type
 * 0x08) occur in these datasets, so that is all we accept.
 */
export type IdxKind = 'images' | 'labels';

/** The magic number each kind must carry: ubyte data with 3 dims (count, rows, cols) or 1 (count). */
export const IDX_MAGIC: Readonly<Record<IdxKind, number>> = {
  images: 0x00000803,
  labels: 0x00000801,
};

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const gunzipAsync = promisify(gunzip);

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

interface IdxHeader {
  dims: number[];
  headerBytes: number;
}

/** Checks the magic number and reads the dimensions; `bytes` must hold at least the whole header. */
function parseIdxHeader(bytes: Uint8Array, file: string, kind: IdxKind): IdxHeader {
  const expectedMagic = IDX_MAGIC[kind];
  if (bytes.byteLength < 4) {
    throw new DatasetError(file, `truncated: ${bytes.byteLength} bytes is shorter than the 4-byte IDX magic number`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    // A gzip stream under a name without .gz is the likeliest mix-up; say so.
    const hint = bytes[0] === 0x1f && bytes[1] === 0x8b ? '; the file looks gzip-compressed' : '';
    const what = kind === 'images' ? 'image' : 'label';
    throw new DatasetError(
      file,
      `bad magic number ${hex32(magic)} (expected ${hex32(expectedMagic)} for an IDX ${what} file)${hint}`,
    );
  }
  const ndims = magic & 0xff;
  const headerBytes = 4 + 4 * ndims;
  if (bytes.byteLength < headerBytes) {
    throw new DatasetError(
      file,
      `truncated header: ${ndims} dimensions need a ${headerBytes}-byte header, file has ${bytes.byteLength} bytes`,
    );
  }
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(view.getUint32(4 + 4 * i, false));
  return { dims, headerBytes };
}

/** Parses IDX bytes already in memory; `file` is only used to name the file in errors. */
export function parseIdx(bytes: Uint8Array, file: string, kind: IdxKind): IdxArray {
  const { dims, headerBytes } = parseIdxHeader(bytes, file, kind);
  const expectedBytes = dims.reduce((product, dim) => product * dim, 1);
  const actualBytes = bytes.byteLength - headerBytes;
  if (actualBytes !== expectedBytes) {
    const what = actualBytes < expectedBytes ? 'truncated' : 'trailing bytes';
    throw new DatasetError(
      file,
      `${what}: header says ${dims.join('x')} = ${expectedBytes} bytes, ` +
        `file has ${actualBytes} after its ${headerBytes}-byte header`,
    );
  }
  // A view, not a copy: the training set is 47 MB and nothing here mutates it.
  return { dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + headerBytes, actualBytes) };
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Reads a file's bytes, gunzipping when it is gzip data. A `.gz` name must hold gzip data; other
 * names are sniffed, since IDX always starts with 0x0000 and gzip with 0x1f8b there is no ambiguity.
 */
export async function readMaybeGzipped(file: string): Promise<Uint8Array> {
  let raw: Buffer;
  try {
    raw = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetError(file, 'file not found');
    throw new DatasetError(file, `cannot read: ${(error as Error).message}`);
  }
  const named = file.endsWith('.gz');
  if (!isGzip(raw)) {
    if (named)
      throw new DatasetError(file, 'not gzip data (the name ends in .gz but the file does not start with 0x1f8b)');
    return raw;
  }
  try {
    // Asynchronous so that a worker's heartbeats keep flowing while 26 MB decompress.
    return await gunzipAsync(raw);
  } catch (error) {
    throw new DatasetError(file, `corrupt gzip data: ${(error as Error).message}`);
  }
}

/**
 * Finds `<dir>/<baseName>` or `<dir>/<baseName>.gz`. When both exist the uncompressed one wins:
 * same content, no decompression.
 */
export async function resolveIdxFile(dir: string, baseName: string): Promise<string> {
  const plain = path.join(dir, baseName);
  for (const candidate of [plain, `${plain}.gz`]) {
    try {
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // not there; try the next name
    }
  }
  throw new DatasetError(plain, `file not found (looked for ${baseName} and ${baseName}.gz)`);
}

/** Reads and parses one IDX file at an exact path (gzipped or not). */
export async function readIdxFile(file: string, kind: IdxKind): Promise<IdxArray> {
  return parseIdx(await readMaybeGzipped(file), file, kind);
}

/**
 * Reads the header and only the first `count` items of an IDX file (all of them when it holds
 * fewer), gzipped or not. The file is streamed and closed as soon as they are in, so showing three
 * test images does not read and decompress ten thousand. The items it does not read are not
 * checked: a file cut short after them passes here and fails readIdxFile.
 */
export async function readIdxHead(file: string, kind: IdxKind, count: number): Promise<IdxArray> {
  const gzipped = isGzip(await readFirstBytes(file, 2));
  if (file.endsWith('.gz') && !gzipped)
    throw new DatasetError(file, 'not gzip data (the name ends in .gz but the file does not start with 0x1f8b)');
  const raw = createReadStream(file);
  const stream = gzipped ? raw.pipe(createGunzip()) : raw;
  const chunks: Buffer[] = [];
  let length = 0;
  let header: IdxHeader | undefined;
  let wanted = Infinity;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      // The header is complete once its 4 + 4 × ndims bytes are in (ndims is the fourth byte).
      if (!header && length >= 4) {
        const head = Buffer.concat(chunks);
        if (length >= 4 + 4 * head[3]!) {
          header = parseIdxHeader(head, file, kind);
          const itemBytes = header.dims.slice(1).reduce((product, dim) => product * dim, 1);
          wanted = header.headerBytes + Math.min(count, header.dims[0] ?? 0) * itemBytes;
        }
      }
      if (length >= wanted) break;
    }
  } catch (error) {
    if (error instanceof DatasetError) throw error;
    throw new DatasetError(file, `${gzipped ? 'corrupt gzip data' : 'cannot read'}: ${(error as Error).message}`);
  } finally {
    // Leaving the loop early ends the stream it read; the file under a gunzip ends here.
    stream.destroy();
    raw.destroy();
  }
  const bytes = Buffer.concat(chunks);
  header ??= parseIdxHeader(bytes, file, kind);
  const [total = 0, ...itemDims] = header.dims;
  const items = Math.min(count, total);
  const itemBytes = itemDims.reduce((product, dim) => product * dim, 1);
  const dataBytes = items * itemBytes;
  if (bytes.byteLength < header.headerBytes + dataBytes) {
    throw new DatasetError(
      file,
      `truncated: header says ${header.dims.join('x')}, file ends after ` +
        `${bytes.byteLength - header.headerBytes} bytes of data (the first ${items} need ${dataBytes})`,
    );
  }
  return {
    dims: [items, ...itemDims],
    data: new Uint8Array(bytes.buffer, bytes.byteOffset + header.headerBytes, dataBytes),
  };
}

/** Up to `count` bytes from the start of a file (fewer when it is shorter). */
async function readFirstBytes(file: string, count: number): Promise<Uint8Array> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(file);
    const buffer = new Uint8Array(count);
    const { bytesRead } = await handle.read(buffer, 0, count, 0);
    return buffer.subarray(0, bytesRead);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetError(file, 'file not found');
    throw new DatasetError(file, `cannot read: ${(error as Error).message}`);
  } finally {
    await handle?.close();
  }
}
