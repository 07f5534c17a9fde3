import { setTimeout as sleep } from 'node:timers/promises';
import { getDataSource } from '../../data/sources';
import { ServingClient, ServingClientError, type PredictOptions } from '../../serving/client';
import type { ServerTarget } from '../servers';
import { FeedbackSender, type FeedbackCounts } from './feedback';
import { readTestSplit, type TestSplit } from './test-split';

/**
 * Live traffic for a model server (the engine of `gantry load`, of make demo's traffic and of the
 * tests'). Replays the Fashion-MNIST test split as predict requests at a steady rate (open loop:
 * request i is due at i / rps, whatever the answers take, bounded by `concurrency`), optionally as
 * K simulated users with stable client keys (so a traffic split is sticky per user), and with
 * `feedback` sends each answered request's true label to :feedback in batches, so a canary's online
 * accuracy has data. It stops at its duration or request count, or when its signal aborts.
 */

const ROW = 28 * 28;

/**
 * Load that cannot start. `usage`: the caller asked for something the server does not serve (a
 * typo in the model, version or rate); `unavailable`: the server cannot be reached or has no
 * AVAILABLE version. `gantry load` exits with 2 for the one and 1 for the other.
 */
export class LoadRefused extends Error {
  override name = 'LoadRefused';
  constructor(
    message: string,
    readonly reason: 'usage' | 'unavailable',
  ) {
    super(message);
  }

  /** For the CLI (which exits with an error's exitCode): a typo is the user's (2), a server that cannot serve now 1. */
  get exitCode(): number {
    return this.reason === 'usage' ? 2 : 1;
  }
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
  feedback: FeedbackCounts;
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
 * a typo fails at once instead of as thousands of errors. Unknown model or version → refused as
 * `usage`; a server that cannot be reached or has nothing AVAILABLE → refused as `unavailable`.
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
      throw new LoadRefused(
        `model "${options.model}" is not served by ${client.url}${served ? ` (it serves: ${served})` : ''}`,
        'usage',
      );
    }
    if (error instanceof ServingClientError && error.kind !== 'http')
      throw new LoadRefused(error.message, 'unavailable');
    throw error;
  }
  const available = versions.filter((v) => v.state === 'AVAILABLE').map((v) => v.version);
  if (available.length === 0) {
    const states = versions.map((v) => `v${v.version} ${v.state}`).join(', ') || 'no versions';
    throw new LoadRefused(
      `model "${options.model}" has no AVAILABLE version on ${client.url} (${states})`,
      'unavailable',
    );
  }
  if (options.version !== undefined && !available.includes(options.version)) {
    throw new LoadRefused(
      `--version: version ${options.version} of model "${options.model}" is not AVAILABLE on ${client.url} ` +
        `(available: ${available.join(', ')})`,
      'usage',
    );
  }
}

/** Runs the load until its duration or request count is reached or `signal` aborts; then drains and summarizes. */
export async function runLoad(options: LoadOptions, signal: AbortSignal): Promise<LoadSummary> {
  if (!(options.rps > 0) || !Number.isFinite(options.rps))
    throw new LoadRefused(`rps: must be a positive number, got ${options.rps}`, 'usage');
  const concurrency = options.concurrency ?? 64;
  const clients = options.clients ?? 0;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const client = new ServingClient(options.server, { timeoutMs });
  await preflight(client, options, signal);
  const data = options.data ?? (await readTestSplit(options.dataDir ?? getDataSource('fashion-mnist').defaultLocation));

  const started = performance.now();
  const intervalMs = 1000 / options.rps;
  const feedback = new FeedbackSender(client, options.model);
  const progress: LoadProgress = {
    elapsedMs: 0,
    sent: 0,
    answered: 0,
    errors: 0,
    inFlight: 0,
    rps: 0,
    errorsByKind: {},
    versions: {},
    feedback: feedback.counts(),
  };
  const latencies: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let slotFreed: (() => void) | undefined;

  const snapshot = (): LoadProgress => {
    const elapsedMs = performance.now() - started;
    return {
      ...structuredClone(progress),
      elapsedMs,
      inFlight: inFlight.size,
      rps: elapsedMs > 0 ? (progress.sent * 1000) / elapsedMs : 0,
      feedback: feedback.counts(),
    };
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
        if (options.feedback) feedback.add(answer.requestId, label);
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
    ? setInterval(() => void feedback.flush(), options.feedbackIntervalMs ?? 200)
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
    if (options.feedback) await feedback.flush();
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
