import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore, type ArtifactStore } from '../../artifacts/store';
import { ingestDataset, loadSplit } from '../../data/index';
import { RecordEncoder } from '../../data/preprocessing';
import { CellEncoder } from '../../data/tabular/cell-encoder';
import { makeTempDir, removeTempDir } from './helpers';

const ROWS = 200_000;
const SHARD_SIZE = 10_000;
const ISLANDS = ['Biscoe', 'Dream', 'Torgersen'];
const SPECIES = ['Adelie', 'Chinstrap', 'Gentoo'];

/** Penguin-like rows with a long free-text note, written through a stream (the test never holds the file). */
async function writeBigCsv(file: string): Promise<void> {
  const out = createWriteStream(file);
  out.write('Species,Island,Beak Length (mm),Flipper Length (mm),Body Mass (g),Sex,Note\n');
  let state = 12345;
  const random = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
  for (let i = 0; i < ROWS; i++) {
    const s = i % 3;
    const line =
      `${SPECIES[s]},${ISLANDS[(s + (random() < 0.2 ? 1 : 0)) % 3]},${(38 + 5 * s + 3 * random()).toFixed(1)},` +
      `${Math.round(190 + 12 * s + 10 * random())},${Math.round(3700 + 600 * s + 400 * random())},` +
      `${random() < 0.5 ? 'MALE' : 'FEMALE'},"${'observed on a cold morning; '.repeat(6)}${i}"\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

describe('tabular ingest of a 200k-row CSV', () => {
  let dir: string;
  let file: string;
  beforeAll(async () => {
    dir = await makeTempDir('tabular-stream');
    file = path.join(dir, 'big.csv');
    await writeBigCsv(file);
  });
  afterAll(() => removeTempDir(dir));

  it('streams: shards go out while rows are still being encoded; the heap stays far below the file', async () => {
    // Counted by hand: a vi.spyOn would keep every call's arguments, i.e. every row, and defeat the heap check.
    // A CSV's rows are encoded in place by CellEncoder (RecordEncoder's encoding): both are counted.
    const original = RecordEncoder.prototype.encode;
    const originalCells = CellEncoder.prototype.encode;
    let encoded = 0;
    RecordEncoder.prototype.encode = function (this: RecordEncoder, ...args) {
      encoded += 1;
      return original.apply(this, args);
    };
    CellEncoder.prototype.encode = function (this: CellEncoder, ...args) {
      encoded += 1;
      return originalCells.apply(this, args);
    };
    const inner = new FileArtifactStore(path.join(dir, 'store'));
    const encodedAtShardPut: number[] = [];
    const store: ArtifactStore = {
      uri: (key) => inner.uri(key),
      get: (uri) => inner.get(uri),
      exists: (uri) => inner.exists(uri),
      list: (prefix) => inner.list(prefix),
      remove: (uri) => inner.remove(uri),
      put: (key, data) => {
        if (/\/images-\d+\.f32$/.test(key)) encodedAtShardPut.push(encoded);
        return inner.put(key, data);
      },
    };
    // What the ingest keeps alive, not the garbage V8 has yet to collect: a full collection before each sample.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;
    let samples = 0;
    const sample = () => {
      gc();
      samples += 1;
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
    };
    const ref = await ingestDataset(
      {
        source: 'csv',
        path: file,
        seed: 1,
        validationFraction: 0.1,
        label: 'Species',
        columns: { Note: { type: 'ignore' } },
        shardSize: SHARD_SIZE,
        statisticsKey: 'pipelines/big/last-statistics.json',
        schemaKey: 'pipelines/big/schema.json',
      },
      store,
      sample,
    ).finally(() => {
      RecordEncoder.prototype.encode = original;
      CellEncoder.prototype.encode = originalCells;
    });
    expect(ref.rows?.read).toBe(ROWS);
    expect(ref.counts.train + ref.counts.validation + ref.counts.test).toBe(ROWS);
    expect(encoded).toBe(ROWS);
    // Every row encoded exactly once, and the first shard went out after one shard's worth of rows, not at the end.
    expect(encodedAtShardPut.length).toBe(
      ref.splits.train.shards.length + ref.splits.validation.shards.length + ref.splits.test.shards.length,
    );
    expect(encodedAtShardPut[0]).toBeLessThan(2 * SHARD_SIZE);
    expect(Math.max(...encodedAtShardPut)).toBe(ROWS);
    const fileBytes = (await stat(file)).size;
    expect(fileBytes).toBeGreaterThan(40 * 2 ** 20);
    // The file parsed into objects would take several times its size; the ingest holds a shard per split (about
    // 0.4 MB each here) and its accumulators.
    expect(samples).toBeGreaterThan(20);
    expect(heapPeak - heapBefore).toBeLessThan(fileBytes / 4);
    const train = await loadSplit(store, ref, 'train');
    expect(train.images.length).toBe(ref.counts.train * ref.featureShape[0]!);
  });
});
