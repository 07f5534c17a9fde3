/**
 * One Gantry side of bench/tabular-ingest.ts, in a process of its own so that its peak RSS is this file's alone:
 * `ingestDataset` of a CSV (schema, statistics, split, float32 shards, drift record) on a FileArtifactStore.
 *
 *   node --import tsx bench/tabular-ingest-child.ts FILE STORE_DIR LABEL
 *
 * Prints one JSON line: rows by split, bytes, wall seconds (total, and the scan pass up to the fingerprint), CPU
 * seconds (total, and the scan pass's), the RSS before the ingest and the process's peak RSS (KiB).
 */
import { stat } from 'node:fs/promises';
import { FileArtifactStore } from '../artifacts/store';
import { ingestDataset } from '../data/ingest';

const [file, storeDir, label] = process.argv.slice(2);
if (!file || !storeDir || !label) throw new Error('usage: tabular-ingest-child.ts FILE STORE_DIR LABEL');

const bytes = (await stat(file)).size;
const baselineRssKiB = Math.round(process.memoryUsage().rss / 1024);
const store = new FileArtifactStore(storeDir);
// The spec's defaults (data/ in pipelines/spec.ts), as `gantry run` would pass them. Built as a plain object, not a
// literal at the call, so that this file also type-checks against an IngestOptions without the tabular fields.
const options = {
  source: 'csv',
  path: file,
  label,
  seed: 42,
  validationFraction: 0.1,
  testFraction: 0.2,
  statisticsKey: 'pipelines/bench/last-statistics.json',
  schemaKey: 'pipelines/bench/schema.json',
};
let scannedAt: number | undefined;
let scanCpu: NodeJS.CpuUsage | undefined;
const cpu0 = process.cpuUsage();
const started = performance.now();
const ref = await ingestDataset(options, store, (message) => {
  // The first pass (read, schema, statistics, preprocessing) ends where the fingerprint is known.
  if (message.startsWith('fingerprint ')) {
    scannedAt = performance.now();
    scanCpu = process.cpuUsage(cpu0);
  }
  if (process.env.BENCH_VERBOSE) console.error(`[gantry] ${message}`);
});
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
const counts = ref.counts;
console.log(
  JSON.stringify({
    // Rows read from the file (kept + dropped + malformed): the same count pandas reads.
    rows: ref.rows?.read ?? counts.train + counts.validation + counts.test,
    counts,
    dropped: ref.rows?.dropped ?? 0,
    malformed: ref.rows?.malformed ?? 0,
    bytes,
    features: ref.featureShape[0],
    seconds,
    scanSeconds: scannedAt === undefined ? null : (scannedAt - started) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    scanCpuSeconds: scanCpu === undefined ? null : (scanCpu.user + scanCpu.system) / 1e6,
    baselineRssKiB,
    // resourceUsage().maxRSS is in KiB: the high-water mark of this process, imports included.
    peakRssKiB: process.resourceUsage().maxRSS,
  }),
);
