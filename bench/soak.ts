import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { ModelRepository } from '../artifacts/model-repository';
import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../data/sources';
import { selectBackend, tf } from '../engine/backend';
import { serializeModel } from '../engine/model-files';
import { parseServerOptions } from '../serving/config';
import { RETIRED_VERSIONS_KEPT } from '../serving/manager';
import { METRIC } from '../serving/metric-names';
import { buildModel } from '../training/architectures';
import type { ProbeRequest, ProbeSample } from './soak-probe';

/**
 * `npx tsx bench/soak.ts` — issue 16's soak: `gantry serve` (a child process, with a feedback token) on a
 * temporary model base path holding a Fashion-MNIST MLP. First a short ramp finds the highest request rate this
 * machine sustains (open loop, one image per :predict, p99 under P99_BOUND_MS and no errors); then the load holds
 * 80 % of it, with every tenth answer's label sent back as :feedback, while BENCH_SWAPS (100) hot swaps happen:
 * version N+1 is published atomically (ModelRepository.publish: a folder renamed into place; weights alternate
 * between two trainings-worth of initial weights) and the server's version policy (latest 1) loads it and unloads
 * N; each swap waits for N+1 AVAILABLE and N gone. Then a window of the same length without swaps. Prints the
 * rate held, requests, failed requests (must be 0), p50/p99 with and without swaps, and the swaps done.
 *
 * Memory: the server runs with bench/soak-probe.ts preloaded, which forces a full garbage collection before each
 * sample, so the samples compare live memory. Sampled fresh (start), under load before the first swap (swap 0),
 * at each quarter of the swaps (the plateau) and idle at the end: resident memory, JS heap, tfjs tensors, graph
 * sessions, the model's metric series, pending timers, and the feedback memory against its caps (bytes, count).
 * A verdict line says whether memory is flat (see memoryVerdict); the exit status is 1 when it is not. Requests
 * that overlapped a sample's forced GC are left out of p50/p99. BENCH_SECONDS (10) is the length of each ramp
 * step's half and of the warm window before the swaps; BENCH_HEAP_SNAPSHOTS=DIR writes the server's heap at start
 * and end there (node:v8). The default run takes about 3 to 4 minutes on 2 CPUs.
 */

const SWAPS = Number(process.env.BENCH_SWAPS ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const P99_BOUND_MS = Number(process.env.BENCH_P99_MS ?? 100);
const RAMP = [25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600, 2400, 3200, 4800, 6400, 9600, 12800];
const MODEL = 'fashion-mnist';
const ROOT = path.resolve(import.meta.dirname, '..');
const HEAP_SNAPSHOTS = process.env.BENCH_HEAP_SNAPSHOTS;
/** The server's feedback memory: the bytes given on the command line, the count cap its default. */
const FEEDBACK_MB = 64;
const FEEDBACK_ENTRIES = parseServerOptions({ modelBasePath: '.' }).feedbackMemory;
/** Heap or RSS growth over the second half of the swaps, beside the feedback memory's, that still counts as flat. */
const FLAT_MB = 8;

await selectBackend();
const data = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
const IMAGES = 64;
const bodies = Array.from({ length: IMAGES }, (_, i) => {
  const pixels = data.test.images.subarray(i * 784, (i + 1) * 784);
  const nested = Array.from({ length: 28 }, (_, y) => Array.from({ length: 28 }, (_, x) => [pixels[y * 28 + x]!]));
  return Buffer.from(JSON.stringify({ instances: [nested] }));
});
const labels = Array.from(data.test.labels.subarray(0, IMAGES));

async function weights(seed: number): Promise<Record<string, Uint8Array | string>> {
  const model = buildModel(tf, 'mlp', { featureShape: [28, 28, 1], numClasses: 10, seed }, {});
  const files = await serializeModel(model);
  model.dispose();
  return {
    ...files,
    'gantry.json': JSON.stringify({ signature: { inputs: { input: {} }, outputs: { probabilities: {} } } }),
  };
}
const modelFiles = [await weights(1), await weights(2)];

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

const base = await mkdtemp(path.join(os.tmpdir(), 'gantry-soak-'));
const repository = new ModelRepository(path.join(base, 'models'));
await repository.publish(MODEL, 1, modelFiles[0]!);
const token = randomBytes(24).toString('hex');
const tokenFile = path.join(base, 'feedback-token');
await writeFile(tokenFile, `soak:${token}\n`, { mode: 0o600 });
const port = await freePort();
// `gantry serve` as bin/gantry runs it (node with tsx's loader on cli/main.ts), plus the GC probe and an IPC channel.
const tsxLoader = path.join(
  path.dirname(createRequire(import.meta.url).resolve('tsx/package.json')),
  'dist/loader.mjs',
);
const server: ChildProcess = spawn(
  process.execPath,
  [
    '--expose-gc',
    ...[
      '--import',
      pathToFileURL(tsxLoader).href,
      '--import',
      pathToFileURL(path.join(ROOT, 'bench/soak-probe.ts')).href,
    ],
    path.join(ROOT, 'cli/main.ts'),
    'serve',
    ...['--model-base-path', repository.root, '--host', '127.0.0.1', '--rest-port', String(port)],
    ...['--grpc-port', 'off', '--poll-seconds', '0.1', '--feedback-token-file', tokenFile],
    ...['--feedback-memory-mb', String(FEEDBACK_MB)],
  ],
  { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

function call(method: string, route: string, body?: Buffer | string, headers: Record<string, string> = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: route,
        agent,
        headers: { 'content-type': 'application/json', ...headers },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            headers: response.headers,
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

async function versions(): Promise<Map<number, string>> {
  const answer = await call('GET', `/v1/models/${MODEL}`).catch(() => undefined);
  const states = new Map<number, string>();
  if (answer?.status !== 200) return states;
  const status = JSON.parse(answer.body) as { model_version_status: { version: string; state: string }[] };
  for (const s of status.model_version_status) states.set(Number(s.version), s.state);
  return states;
}

async function waitFor(what: string, test: (states: Map<number, string>) => boolean, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (test(await versions())) return;
    await sleep(20);
  }
  throw new Error(`soak: ${what} did not happen in ${timeoutMs} ms`);
}

/** When the server was paused by a memory sample's forced GC (performance.now(); `to` unset while it runs). */
const pauses: { from: number; to?: number }[] = [];
const overlapsPause = (from: number, to: number) => pauses.some((p) => from <= (p.to ?? Infinity) && to >= p.from);

interface Stats {
  rssMb: number;
  heapMb: number;
  tensors: number;
  sessions: number;
  /** Series of the soak's model in the server's registry (every version's, kept or not). */
  series: number;
  timers: number;
  feedbackMb: number;
  feedbackEntries: number;
  gcMs: number;
}

/** The server's live memory: a forced full GC (bench/soak-probe.ts), then its own gauges. */
async function serverStats(heapSnapshot?: string): Promise<Stats> {
  const reply = new Promise<ProbeSample>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('soak: the server did not answer the memory probe')), 120_000);
    server.once('message', (message: ProbeSample) => {
      clearTimeout(timer);
      resolve(message);
    });
  });
  const pause: { from: number; to?: number } = { from: performance.now() };
  pauses.push(pause);
  server.send({ type: 'sample', ...(heapSnapshot ? { heapSnapshot } : {}) } satisfies ProbeRequest);
  const probe = await reply.finally(() => (pause.to = performance.now()));
  if (probe.heapSnapshot) console.log(`heap snapshot: ${probe.heapSnapshot}`);
  const answer = await call('GET', '/monitoring/metrics.json');
  const metrics = JSON.parse(answer.body) as {
    name: string;
    values: { value: number; labels: { model?: string } }[];
  }[];
  const value = (name: string) => metrics.find((m) => m.name === name)?.values[0]?.value ?? Number.NaN;
  return {
    rssMb: probe.rssBytes / 2 ** 20,
    heapMb: probe.heapUsedBytes / 2 ** 20,
    tensors: value(METRIC.tfjsTensors),
    sessions: value(METRIC.graphSessions),
    series: metrics.reduce((sum, m) => sum + m.values.filter((v) => v.labels.model === MODEL).length, 0),
    timers: probe.timers,
    feedbackMb: value(METRIC.feedbackMemoryBytes) / 2 ** 20,
    feedbackEntries: value(METRIC.feedbackMemoryPredictions),
    gcMs: probe.gcMs,
  };
}

interface Window {
  /** Of the answered requests that did not overlap a memory sample (those are in `paused`). */
  latencies: number[];
  paused: number;
  requests: number;
  failed: number;
  failures: Map<string, number>;
  feedbackFailed: number;
}

/**
 * Open-loop load at `rate` requests per second until `stop()` says so: one request per tick whatever the answers
 * take, so a slow swap shows as latency rather than as fewer requests. Every tenth answer's true label goes back
 * as :feedback with the server's request id.
 */
async function load(rate: number, stop: () => boolean): Promise<Window> {
  const window: Window = { latencies: [], paused: 0, requests: 0, failed: 0, failures: new Map(), feedbackFailed: 0 };
  const inFlight = new Set<Promise<void>>();
  const start = performance.now();
  let sent = 0;
  while (!stop()) {
    const due = start + (sent * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const image = sent % IMAGES;
    sent++;
    const t0 = performance.now();
    const request = call('POST', `/v1/models/${MODEL}:predict`, bodies[image])
      .then(async (answer) => {
        const t1 = performance.now();
        // A forced GC is the bench's doing, not the server's: its requests stay out of the latency figures.
        if (overlapsPause(t0, t1)) window.paused++;
        else window.latencies.push(t1 - t0);
        if (answer.status !== 200) {
          window.failed++;
          const key = `HTTP ${answer.status} ${answer.body.slice(0, 120)}`;
          window.failures.set(key, (window.failures.get(key) ?? 0) + 1);
          return;
        }
        const id = answer.headers['x-request-id'];
        if (image % 10 === 0 && typeof id === 'string') {
          const feedback = JSON.stringify({ feedback: [{ request_id: id, labels: labels[image] }] });
          const sentBack = await call('POST', `/v1/models/${MODEL}:feedback`, feedback, {
            authorization: `Bearer ${token}`,
          });
          if (sentBack.status !== 200) window.feedbackFailed++;
        }
      })
      .catch((error: Error) => {
        window.failed++;
        const key = error.message;
        window.failures.set(key, (window.failures.get(key) ?? 0) + 1);
      })
      .finally(() => {
        window.requests++;
        inFlight.delete(request);
      });
    inFlight.add(request);
  }
  await Promise.all(inFlight);
  return window;
}

/**
 * Flat or not, and why. Idle at start and end: tfjs tensors and graph sessions equal (one version loaded each
 * time), pending timers within 2 (under load each queued request has its deadline timer, so only idle counts
 * compare). Over the second half of the swaps (the first half includes the retired versions' series filling
 * up to RETIRED_VERSIONS_KEPT): the model's series growing by less than one per two swaps (a per-version leak
 * adds at least one a swap), JS heap and RSS by at most FLAT_MB beside what the (bounded) feedback memory took.
 */
function memoryVerdict(all: [string, Stats][]): { flat: boolean; line: string } {
  const at = (name: string) => all.find(([n]) => n === name)?.[1];
  const plateau = all.filter(([n]) => n.startsWith('swap '));
  const start = at('start')!;
  const end = at('end')!;
  const [middleName, middle] = plateau[Math.floor(plateau.length / 2)] ?? [];
  const [lastName, last] = plateau.at(-1) ?? [];
  if (!middle || !last || plateau.length < 3) return { flat: false, line: 'too few swaps to judge (BENCH_SWAPS ≥ 2)' };
  const swapsBetween = Number(lastName!.slice(5)) - Number(middleName!.slice(5));
  const problems: string[] = [];
  if (end.tensors !== start.tensors) problems.push(`tfjs tensors ${start.tensors} → ${end.tensors}`);
  if (end.sessions !== start.sessions) problems.push(`graph sessions ${start.sessions} → ${end.sessions}`);
  if (end.timers > start.timers + 2) problems.push(`pending timers ${start.timers} → ${end.timers}`);
  if (2 * (last.series - middle.series) >= swapsBetween)
    problems.push(`model series ${middle.series} → ${last.series} over ${swapsBetween} swaps`);
  const feedback = last.feedbackMb - middle.feedbackMb;
  const heap = last.heapMb - middle.heapMb - feedback;
  const rss = last.rssMb - middle.rssMb - feedback;
  if (heap > FLAT_MB) problems.push(`JS heap +${heap.toFixed(1)} MB over ${swapsBetween} swaps`);
  if (rss > FLAT_MB) problems.push(`RSS +${rss.toFixed(0)} MB over ${swapsBetween} swaps`);
  const growth =
    `${middleName} → ${lastName}: JS heap ${signed(heap)} MB and RSS ${signed(rss)} MB beside the feedback ` +
    `memory's ${signed(feedback)} MB, model series ${middle.series} → ${last.series}`;
  return problems.length === 0
    ? {
        flat: true,
        line:
          `memory flat (start → end: tfjs tensors ${start.tensors} → ${end.tensors}, graph sessions ` +
          `${start.sessions} → ${end.sessions}, timers ${start.timers} → ${end.timers}; ${growth})`,
      }
    : { flat: false, line: `memory NOT flat: ${problems.join('; ')} (${growth})` };
}

function signed(mb: number): string {
  return `${mb >= 0 ? '+' : ''}${mb.toFixed(1)}`;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const forSeconds = (seconds: number) => {
  const until = performance.now() + seconds * 1000;
  return () => performance.now() >= until;
};

try {
  await waitFor('version 1 AVAILABLE', (states) => states.get(1) === 'AVAILABLE');
  const samples: [string, Stats][] = [];
  const snapshotFile = (name: string) =>
    HEAP_SNAPSHOTS ? path.join(HEAP_SNAPSHOTS, `soak-${name}.heapsnapshot`) : undefined;
  samples.push(['start', await serverStats(snapshotFile('start'))]);

  // ---- ramp: the highest rate with p99 under the bound and no errors ----
  let sustained = 0;
  const rampSeconds = Math.max(2, SECONDS / 3);
  const step = async (rate: number) => {
    const started = performance.now();
    const window = await load(rate, forSeconds(rampSeconds));
    const achieved = window.requests / ((performance.now() - started) / 1000);
    const p99 = percentile(window.latencies, 99);
    console.log(`ramp ${rate}/s: ${achieved.toFixed(0)}/s done, p99 ${p99.toFixed(1)} ms, ${window.failed} failed`);
    return window.failed === 0 && p99 < P99_BOUND_MS && achieved > 0.9 * rate;
  };
  for (const rate of RAMP) {
    // A step gets a second try: on a shared machine one stall elsewhere can spoil one step's p99.
    if (!(await step(rate)) && !(await step(rate))) break;
    sustained = rate;
  }
  if (sustained === 0) throw new Error(`soak: not even ${RAMP[0]}/s keeps p99 under ${P99_BOUND_MS} ms`);
  const held = Math.round(sustained * 0.8);

  // ---- hold 80 % of it: a warm window, the swaps, then a window of the same length without swaps ----
  await load(held, forSeconds(SECONDS));
  let version = 1;
  let swapsDone = 0;
  let swapping = true;
  const swapStarted = performance.now();
  const duringSwaps = load(held, () => !swapping);
  // The plateau: swap 0 (warm, under load) and each quarter of the swaps, under the same load.
  const quarters = new Set([1, 2, 3, 4].map((q) => Math.round((SWAPS * q) / 4)));
  try {
    samples.push(['swap 0', await serverStats()]);
    for (let i = 0; i < SWAPS; i++) {
      const next = version + 1;
      await repository.publish(MODEL, next, modelFiles[next % 2]!);
      await waitFor(
        `version ${next} AVAILABLE and ${version} unloaded`,
        (states) => states.get(next) === 'AVAILABLE' && (states.get(version) ?? 'END') === 'END',
      );
      version = next;
      swapsDone++;
      if (quarters.has(swapsDone)) samples.push([`swap ${swapsDone}`, await serverStats()]);
    }
  } finally {
    swapping = false;
  }
  const swaps = await duringSwaps;
  const swapSeconds = (performance.now() - swapStarted) / 1000;
  const quiet = await load(held, forSeconds(swapSeconds));
  samples.push(['end', await serverStats(snapshotFile('end'))]);

  const row = (name: string, w: Window) =>
    `| ${name.padEnd(14)} | ${String(w.requests).padStart(8)} | ${String(w.failed).padStart(6)} | ` +
    `${String(w.feedbackFailed).padStart(12)} | ${percentile(w.latencies, 50).toFixed(1).padStart(8)} | ` +
    `${percentile(w.latencies, 99).toFixed(1).padStart(8)} |`;
  console.log('');
  console.log(`gantry serve soak — ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);
  console.log(`highest sustained rate: ${sustained}/s (p99 < ${P99_BOUND_MS} ms, no errors); held: ${held}/s`);
  console.log(`swaps done: ${swapsDone}/${SWAPS} in ${swapSeconds.toFixed(1)} s (versions 2..${version})`);
  console.log('');
  console.log('| window         | requests | failed | feedback err | p50 (ms) | p99 (ms) |');
  console.log('|----------------|----------|--------|--------------|----------|----------|');
  console.log(row('during swaps', swaps));
  console.log(row('without swaps', quiet));
  console.log(
    `(p50/p99 leave out the ${swaps.paused + quiet.paused} requests that overlapped a memory sample: its forced GC ` +
      `paused the server up to ${Math.max(...samples.map(([, s]) => s.gcMs)).toFixed(0)} ms)`,
  );
  console.log('');
  console.log('server memory after a forced full GC (bench/soak-probe.ts):');
  console.log('');
  console.log(
    '| sample    | RSS MB | JS heap MB | tensors | graph sessions | model series | timers | ' +
      'feedback MB | predictions |',
  );
  console.log(
    '|-----------|--------|------------|---------|----------------|--------------|--------|' +
      '-------------|-------------|',
  );
  for (const [name, s] of samples)
    console.log(
      `| ${name.padEnd(9)} | ${s.rssMb.toFixed(0).padStart(6)} | ${s.heapMb.toFixed(1).padStart(10)} | ` +
        `${String(s.tensors).padStart(7)} | ${String(s.sessions).padStart(14)} | ${String(s.series).padStart(12)} | ` +
        `${String(s.timers).padStart(6)} | ${s.feedbackMb.toFixed(1).padStart(11)} | ` +
        `${String(s.feedbackEntries).padStart(11)} |`,
    );
  // The feedback memory holds predictions awaiting labels: it fills with the load up to its caps, by design.
  const peakFeedback = samples.reduce((a, [, s]) => (s.feedbackMb > a.feedbackMb ? s : a), samples[0]![1]);
  console.log(
    `feedback memory: at most ${peakFeedback.feedbackMb.toFixed(1)} of ${FEEDBACK_MB} MB and ` +
      `${peakFeedback.feedbackEntries} of ${FEEDBACK_ENTRIES} predictions (its caps); a retired version's ` +
      `series and pending predictions go once ${RETIRED_VERSIONS_KEPT} newer versions retired`,
  );
  const verdict = memoryVerdict(samples);
  console.log(`verdict: ${verdict.line}`);
  for (const [what, w] of [
    ['during swaps', swaps],
    ['without swaps', quiet],
  ] as const) {
    for (const [failure, count] of w.failures) console.log(`failed ${what}: ${count} × ${failure}`);
  }
  const failed = swaps.failed + quiet.failed;
  console.log(`\nfailed requests: ${failed}`);
  process.exitCode = failed === 0 && swapsDone === SWAPS && verdict.flat ? 0 : 1;
} finally {
  agent.destroy();
  server.kill('SIGTERM');
  await Promise.race([once(server, 'exit'), sleep(10_000)]);
  await rm(base, { recursive: true, force: true });
}
