import { setTimeout as sleep } from 'node:timers/promises';
import { Option } from 'commander';
import { z } from 'zod';
import { gantryHome } from '../../control/home';
import { ServersConfigError, ServerTargetSchema, servingTargets, type ServerTarget } from '../../control/servers';
import { readIdxFile, resolveIdxFile } from '../../data/idx';
import { DatasetError } from '../../data/errors';
import { durationMs } from '../../pipelines/duration';
import { DurationSchema } from '../../pipelines/spec';
import { getDataSource } from '../../data/sources';
import { ServingClient, ServingClientError, type PredictOptions } from '../../serving/client';
import { LABEL_PATTERN, MODEL_NAME_PATTERN } from '../../serving/config';
import { badFlags, CommandFailed, UsageError } from '../errors';

/**
 * `gantry load <model>`: live traffic for a model server. Replays the Fashion-MNIST test split as
 * predict requests at a steady rate (open loop: request i is due at i / rps, whatever the answers
 * take, bounded by --concurrency), optionally as K simulated users with stable client keys (so a
 * traffic split is sticky per user), and with --feedback sends each answered request's true label
 * to :feedback in batches, so a canary's online accuracy has data. The engine, runLoad, runs
 * in-process too (make demo, tests) and stops when its signal aborts.
 */

export interface TestSplit {
  /** count × 784 raw pixel values. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

const ROW = 28 * 28;

/** The t10k image and label files of a Fashion-MNIST folder (gzipped or not), checked against each other. */
export async function readTestSplit(dir: string): Promise<TestSplit> {
  const [imagesFile, labelsFile] = await Promise.all([
    resolveIdxFile(dir, 't10k-images-idx3-ubyte'),
    resolveIdxFile(dir, 't10k-labels-idx1-ubyte'),
  ]);
  const [images, labels] = await Promise.all([readIdxFile(imagesFile, 'images'), readIdxFile(labelsFile, 'labels')]);
  const [count = 0, rows, cols] = images.dims;
  if (rows !== 28 || cols !== 28) throw new DatasetError(imagesFile, `images are ${rows}x${cols}, expected 28x28`);
  if (labels.dims[0] !== count)
    throw new DatasetError(labelsFile, `has ${labels.dims[0]} labels but ${imagesFile} has ${count} images`);
  if (count === 0) throw new DatasetError(imagesFile, 'holds no images');
  return { images: images.data, labels: labels.data, count };
}

export interface LoadOptions {
  model: string;
  server: ServerTarget;
  /** Requests per second (> 0). */
  rps: number;
  /** Stop sending after this long; with `requests`, whichever comes first; neither: until the signal. */
  durationMs?: number;
  requests?: number;
  /** Requests in flight at most (default 64); a due request waits for a free slot. */
  concurrency?: number;
  /** Simulated users, each with the client key `user-<k>`; 0 (default): no key, each request routed on its own. */
  clients?: number;
  /** Send the true labels of answered requests to :feedback. */
  feedback?: boolean;
  /** How often pending feedback is sent (default 200 ms). */
  feedbackIntervalMs?: number;
  /** Pin a version or a label instead of following the traffic split. */
  version?: number;
  label?: string;
  encoding?: 'json' | 'binary';
  /** Per request (default 10 s). */
  timeoutMs?: number;
  /** The test split to replay; default: read from `dataDir` (default the fashion-mnist source's folder). */
  data?: TestSplit;
  dataDir?: string;
  /** How often onProgress is called (default 1000 ms); it is also called once at the end. */
  progressIntervalMs?: number;
  onProgress?: (progress: LoadProgress) => void;
}

export interface VersionTally {
  answered: number;
  /** Answers whose arg-max was the true label. */
  correct: number;
  accuracy: number | null;
}

export interface LoadProgress {
  elapsedMs: number;
  sent: number;
  answered: number;
  errors: number;
  inFlight: number;
  /** Requests sent per second since the start. */
  rps: number;
  /** Errors by HTTP status ("429", "503") or by kind ("unreachable", "timeout"). */
  errorsByKind: Record<string, number>;
  /** Client-side counts per answering version (from x-gantry-model-version). */
  versions: Record<string, VersionTally>;
  feedback: { sent: number; accepted: number; unknown: number; rejected: number; failed: number; pending: number };
}

export interface LoadSummary extends LoadProgress {
  model: string;
  server: string;
  targetRps: number;
  clients: number;
  stoppedBy: 'duration' | 'requests' | 'signal';
  /** Client-side latency of the answered requests. */
  latencyMs: { p50: number; p90: number; p99: number; max: number } | null;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

function argmax(row: number[]): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

function errorKind(error: unknown): string {
  if (error instanceof ServingClientError) return error.kind === 'http' ? String(error.status) : error.kind;
  return 'client';
}

/**
 * Checks that the server answers and serves the model (and the pinned version or label), so that
 * a typo fails at once instead of as thousands of errors. Unknown model → UsageError; a server
 * that cannot be reached or has nothing AVAILABLE → CommandFailed.
 */
async function preflight(client: ServingClient, options: LoadOptions, signal: AbortSignal): Promise<void> {
  let versions;
  try {
    versions = await client.modelStatus(options.model, { signal });
  } catch (error) {
    if (error instanceof ServingClientError && error.status === 404) {
      let served = '';
      try {
        served = (await client.listModels({ signal })).map((m) => m.name).join(', ');
      } catch {
        // the list only decorates the message
      }
      throw new UsageError(
        `model "${options.model}" is not served by ${client.url}${served ? ` (it serves: ${served})` : ''}`,
      );
    }
    if (error instanceof ServingClientError && error.kind !== 'http') throw new CommandFailed(error.message);
    throw error;
  }
  const available = versions.filter((v) => v.state === 'AVAILABLE').map((v) => v.version);
  if (available.length === 0) {
    throw new CommandFailed(
      `model "${options.model}" has no AVAILABLE version on ${client.url} (${versions.map((v) => `v${v.version} ${v.state}`).join(', ') || 'no versions'})`,
    );
  }
  if (options.version !== undefined && !available.includes(options.version)) {
    throw new UsageError(
      `--version: version ${options.version} of model "${options.model}" is not AVAILABLE on ${client.url} (available: ${available.join(', ')})`,
    );
  }
}

/** Runs the load until its duration or request count is reached or `signal` aborts; then drains and summarizes. */
export async function runLoad(options: LoadOptions, signal: AbortSignal): Promise<LoadSummary> {
  if (!(options.rps > 0) || !Number.isFinite(options.rps))
    throw new UsageError(`rps: must be a positive number, got ${options.rps}`);
  const concurrency = options.concurrency ?? 64;
  const clients = options.clients ?? 0;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const client = new ServingClient(options.server, { timeoutMs });
  await preflight(client, options, signal);
  const data = options.data ?? (await readTestSplit(options.dataDir ?? getDataSource('fashion-mnist').defaultLocation));

  const started = performance.now();
  const intervalMs = 1000 / options.rps;
  const progress: LoadProgress = {
    elapsedMs: 0,
    sent: 0,
    answered: 0,
    errors: 0,
    inFlight: 0,
    rps: 0,
    errorsByKind: {},
    versions: {},
    feedback: { sent: 0, accepted: 0, unknown: 0, rejected: 0, failed: 0, pending: 0 },
  };
  const latencies: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let slotFreed: (() => void) | undefined;
  let pending: { requestId: string; labels: number }[] = [];
  let feedbackChain: Promise<void> = Promise.resolve();

  const snapshot = (): LoadProgress => {
    const elapsedMs = performance.now() - started;
    return {
      ...structuredClone(progress),
      elapsedMs,
      inFlight: inFlight.size,
      rps: elapsedMs > 0 ? (progress.sent * 1000) / elapsedMs : 0,
      feedback: { ...progress.feedback, pending: pending.length },
    };
  };

  const flushFeedback = (): Promise<void> => {
    if (pending.length === 0) return feedbackChain;
    const batch = pending;
    pending = [];
    // One feedback call at a time, in order; a failed batch is counted, not retried.
    feedbackChain = feedbackChain.then(async () => {
      progress.feedback.sent += batch.length;
      try {
        const result = await client.feedback(options.model, batch);
        progress.feedback.accepted += result.accepted;
        progress.feedback.unknown += result.unknown_request_ids.length;
        progress.feedback.rejected += result.rejected.length;
      } catch {
        progress.feedback.failed += batch.length;
      }
    });
    return feedbackChain;
  };

  const send = (index: number) => {
    const row = index % data.count;
    const label = data.labels[row]!;
    const predictOptions: PredictOptions = {
      encoding: options.encoding ?? 'json',
      version: options.version,
      label: options.label,
    };
    if (clients > 0) predictOptions.clientKey = `user-${index % clients}`;
    const t0 = performance.now();
    progress.sent++;
    const call = client
      .predict(options.model, data.images.subarray(row * ROW, (row + 1) * ROW), predictOptions)
      .then((answer) => {
        latencies.push(performance.now() - t0);
        progress.answered++;
        const tally = (progress.versions[String(answer.version)] ??= { answered: 0, correct: 0, accuracy: null });
        tally.answered++;
        if (argmax(answer.predictions[0]!) === label) tally.correct++;
        tally.accuracy = tally.correct / tally.answered;
        if (options.feedback) pending.push({ requestId: answer.requestId, labels: label });
      })
      .catch((error: unknown) => {
        progress.errors++;
        const kind = errorKind(error);
        progress.errorsByKind[kind] = (progress.errorsByKind[kind] ?? 0) + 1;
      })
      .finally(() => {
        inFlight.delete(call);
        slotFreed?.();
      });
    inFlight.add(call);
  };

  const progressTimer = options.onProgress
    ? setInterval(() => options.onProgress!(snapshot()), options.progressIntervalMs ?? 1000)
    : undefined;
  const feedbackTimer = options.feedback
    ? setInterval(() => void flushFeedback(), options.feedbackIntervalMs ?? 200)
    : undefined;
  const wake = () => slotFreed?.();
  signal.addEventListener('abort', wake, { once: true });
  let stoppedBy: LoadSummary['stoppedBy'] = 'signal';
  try {
    let index = 0;
    let due = started;
    for (;;) {
      if (signal.aborted) {
        stoppedBy = 'signal';
        break;
      }
      if (options.requests !== undefined && index >= options.requests) {
        stoppedBy = 'requests';
        break;
      }
      const now = performance.now();
      if (options.durationMs !== undefined && now - started >= options.durationMs) {
        stoppedBy = 'duration';
        break;
      }
      if (now < due) {
        // An abort ends the wait early (it rejects); the loop's next turn sees it and stops.
        await sleep(
          Math.min(due - now, options.durationMs !== undefined ? options.durationMs - (now - started) : Infinity),
          undefined,
          { signal },
        ).catch(() => undefined);
        continue;
      }
      if (inFlight.size >= concurrency) {
        await new Promise<void>((resolve) => (slotFreed = resolve));
        slotFreed = undefined;
        continue;
      }
      send(index++);
      due += intervalMs;
      // Fell more than a second behind (a stalled server, a paused process): start afresh from
      // now rather than send the missed requests in one burst.
      if (now - due > 1000) due = now;
    }
    // Let what was sent finish (each call is bounded by the timeout), then send the last labels.
    await Promise.allSettled([...inFlight]);
    if (options.feedback) await flushFeedback();
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    if (feedbackTimer) clearInterval(feedbackTimer);
    signal.removeEventListener('abort', wake);
  }
  const final = snapshot();
  options.onProgress?.(final);
  const sorted = Float64Array.from(latencies).sort();
  return {
    ...final,
    model: options.model,
    server: client.url,
    targetRps: options.rps,
    clients,
    stoppedBy,
    latencyMs: sorted.length
      ? {
          p50: quantile(sorted, 0.5),
          p90: quantile(sorted, 0.9),
          p99: quantile(sorted, 0.99),
          max: sorted[sorted.length - 1]!,
        }
      : null,
  };
}

// ---- the command ----

const number = () => z.coerce.number({ error: 'must be a number' });
const positiveInt = (max: number) =>
  number().int('must be a whole number').min(1, 'must be at least 1').max(max, `must be at most ${max}`);

const FlagsSchema = z
  .object({
    server: z.string().optional(),
    rps: number().gt(0, 'must be greater than 0').max(100_000, 'must be at most 100000'),
    duration: DurationSchema.transform(durationMs).optional(),
    requests: positiveInt(1_000_000_000).optional(),
    concurrency: positiveInt(10_000),
    clients: number()
      .int('must be a whole number')
      .min(0, 'must be 0 or more')
      .max(1_000_000, 'must be at most 1000000'),
    feedback: z.boolean().optional(),
    version: positiveInt(Number.MAX_SAFE_INTEGER).optional(),
    label: z.string().regex(LABEL_PATTERN, 'must match [a-zA-Z0-9_]+').optional(),
    encoding: z.enum(['json', 'binary']),
    timeoutMs: positiveInt(3_600_000),
    data: z.string().min(1).optional(),
    json: z.boolean().optional(),
  })
  .refine((f) => f.version === undefined || f.label === undefined, {
    message: 'give --version or --label, not both',
    path: ['label'],
  });

export interface LoadFlags {
  server?: string;
  rps: string;
  duration?: string;
  requests?: string;
  concurrency: string;
  clients: string;
  feedback?: boolean;
  version?: string;
  label?: string;
  encoding: string;
  timeoutMs: string;
  data?: string;
  json?: boolean;
}

/** commander Options whose value choices are checked by commander itself (exit 2 naming the flag). */
export const loadEncodingOption = () =>
  new Option('--encoding <encoding>', 'request body: TF Serving JSON rows, or the raw float32 tensor')
    .choices(['json', 'binary'])
    .default('json');

function target(flag: string | undefined): ServerTarget {
  if (flag !== undefined) {
    const parsed = ServerTargetSchema.safeParse({
      url: flag,
      ...(process.env.GANTRY_SERVE_ADMIN_TOKEN ? { adminToken: process.env.GANTRY_SERVE_ADMIN_TOKEN } : {}),
    });
    if (!parsed.success) throw new UsageError(`--server: ${JSON.stringify(flag)} is not an http(s) URL`);
    return parsed.data;
  }
  let targets: ServerTarget[];
  try {
    targets = servingTargets(gantryHome());
  } catch (error) {
    if (error instanceof ServersConfigError) throw new UsageError(error.message);
    throw error;
  }
  const first = targets[0];
  if (!first)
    throw new UsageError(
      'no model server: give --server URL, or list servers in GANTRY_SERVERS or GANTRY_HOME/servers.json',
    );
  return first;
}

const fmtRate = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);

function versionsLine(p: LoadProgress): string {
  return Object.entries(p.versions)
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([v, t]) => `v${v} ${t.answered} (acc ${fmtRate(t.accuracy)})`)
    .join(', ');
}

function progressLine(p: LoadProgress): string {
  const errors = Object.entries(p.errorsByKind)
    .map(([k, n]) => `${k}×${n}`)
    .join(' ');
  const fb = p.feedback.sent + p.feedback.pending > 0 ? ` | feedback ${p.feedback.accepted}/${p.feedback.sent}` : '';
  return `${(p.elapsedMs / 1000).toFixed(1)}s sent ${p.sent} answered ${p.answered} errors ${p.errors}${errors ? ` (${errors})` : ''} ${p.rps.toFixed(1)} rps | ${versionsLine(p) || 'no answers yet'}${fb}`;
}

export function formatLoadSummary(s: LoadSummary): string {
  const lines = [
    `load       ${s.model} on ${s.server}: ${s.sent} requests in ${(s.elapsedMs / 1000).toFixed(1)} s (${s.rps.toFixed(1)} rps of ${s.targetRps} wanted), stopped by ${s.stoppedBy}`,
    `answered   ${s.answered}, errors ${s.errors}${
      Object.keys(s.errorsByKind).length
        ? ` (${Object.entries(s.errorsByKind)
            .map(([k, n]) => `${k}: ${n}`)
            .join(', ')})`
        : ''
    }`,
    `latency    ${s.latencyMs ? `p50 ${s.latencyMs.p50.toFixed(1)} ms, p90 ${s.latencyMs.p90.toFixed(1)} ms, p99 ${s.latencyMs.p99.toFixed(1)} ms, max ${s.latencyMs.max.toFixed(1)} ms (client side)` : '-'}`,
    'versions',
    ...Object.entries(s.versions)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
      .map(([v, t]) => `  v${v}: ${t.answered} answers, accuracy ${fmtRate(t.accuracy)} (${t.correct} correct)`),
  ];
  if (s.feedback.sent > 0) {
    lines.push(
      `feedback   ${s.feedback.sent} labels sent: ${s.feedback.accepted} accepted, ${s.feedback.unknown} unknown, ${s.feedback.rejected} rejected, ${s.feedback.failed} failed`,
    );
  }
  return lines.join('\n');
}

export async function loadCommand(model: string, raw: LoadFlags): Promise<void> {
  if (!MODEL_NAME_PATTERN.test(model))
    throw new UsageError(
      `model name ${JSON.stringify(model)} is not valid: 1-128 of [A-Za-z0-9_.-], not starting with "."`,
    );
  const parsed = FlagsSchema.safeParse(raw);
  if (!parsed.success) throw badFlags(parsed.error);
  const flags = parsed.data;
  const server = target(flags.server);
  const stop = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\ngantry load: stopping (waiting for the requests in flight; Ctrl-C again to quit now)\n');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const tty = process.stderr.isTTY === true;
  let data: TestSplit;
  try {
    data = await readTestSplit(flags.data ?? getDataSource('fashion-mnist').defaultLocation);
  } catch (error) {
    if (error instanceof DatasetError) throw new UsageError(`${flags.data ? '--data: ' : ''}${error.message}`);
    throw error;
  }
  const what =
    flags.duration !== undefined
      ? `for ${raw.duration}`
      : flags.requests !== undefined
        ? `${flags.requests} requests`
        : 'until Ctrl-C';
  process.stderr.write(
    `gantry load: ${model} on ${server.url} at ${flags.rps} rps ${what}${flags.clients ? `, ${flags.clients} clients` : ''}${flags.feedback ? ', with feedback' : ''}\n`,
  );
  let summary: LoadSummary;
  try {
    summary = await runLoad(
      {
        model,
        server,
        rps: flags.rps,
        durationMs: flags.duration,
        requests: flags.requests,
        concurrency: flags.concurrency,
        clients: flags.clients,
        feedback: flags.feedback ?? false,
        version: flags.version,
        label: flags.label,
        encoding: flags.encoding,
        timeoutMs: flags.timeoutMs,
        data,
        progressIntervalMs: tty ? 250 : 5000,
        // On a terminal one line rewritten in place (cut to its width, so it never wraps); else a line every 5 s.
        onProgress: (p) =>
          process.stderr.write(
            tty
              ? `\r\x1b[2K${progressLine(p).slice(0, Math.max(20, (process.stderr.columns || 200) - 1))}`
              : `${progressLine(p)}\n`,
          ),
      },
      stop.signal,
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (tty) process.stderr.write('\n');
  console.log(flags.json ? JSON.stringify(summary) : formatLoadSummary(summary));
}
