import { Option } from 'commander';
import { z } from 'zod';
import { gantryHome } from '../../control/home';
import { runLoad, type LoadProgress, type LoadSummary } from '../../control/load/generator';
import { readTestSplit, type TestSplit } from '../../control/load/test-split';
import { ServersConfigError, ServerTargetSchema, servingTargets, type ServerTarget } from '../../control/servers';
import { DatasetError } from '../../data/errors';
import { durationMs } from '../../pipelines/duration';
import { DurationSchema } from '../../pipelines/spec';
import { getDataSource } from '../../data/sources';
import { LABEL_PATTERN, MODEL_NAME_PATTERN } from '../../serving/config';
import { bearerOf } from '../../serving/feedback-auth';
import { badFlags, UsageError } from '../errors';

/**
 * `gantry load <model>`: live traffic for a model server (control/load/generator.ts is the engine).
 * This file turns the flags into its options, shows its progress on stderr and prints its summary.
 */

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
      ...(process.env.GANTRY_FEEDBACK_TOKEN ? { feedbackToken: bearerOf(process.env.GANTRY_FEEDBACK_TOKEN) } : {}),
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
  return (
    `${(p.elapsedMs / 1000).toFixed(1)}s sent ${p.sent} answered ${p.answered} errors ${p.errors}` +
    `${errors ? ` (${errors})` : ''} ${p.rps.toFixed(1)} rps | ${versionsLine(p) || 'no answers yet'}${fb}`
  );
}

export function formatLoadSummary(s: LoadSummary): string {
  const latency = s.latencyMs
    ? `p50 ${s.latencyMs.p50.toFixed(1)} ms, p90 ${s.latencyMs.p90.toFixed(1)} ms, ` +
      `p99 ${s.latencyMs.p99.toFixed(1)} ms, max ${s.latencyMs.max.toFixed(1)} ms (client side)`
    : '-';
  const lines = [
    `load       ${s.model} on ${s.server}: ${s.sent} requests in ${(s.elapsedMs / 1000).toFixed(1)} s ` +
      `(${s.rps.toFixed(1)} rps of ${s.targetRps} wanted), stopped by ${s.stoppedBy}`,
    `answered   ${s.answered}, errors ${s.errors}${
      Object.keys(s.errorsByKind).length
        ? ` (${Object.entries(s.errorsByKind)
            .map(([k, n]) => `${k}: ${n}`)
            .join(', ')})`
        : ''
    }`,
    `latency    ${latency}`,
    'versions',
    ...Object.entries(s.versions)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
      .map(([v, t]) => `  v${v}: ${t.answered} answers, accuracy ${fmtRate(t.accuracy)} (${t.correct} correct)`),
  ];
  if (s.feedback.sent > 0) {
    lines.push(
      `feedback   ${s.feedback.sent} labels sent: ${s.feedback.accepted} accepted, ${s.feedback.unknown} unknown, ` +
        `${s.feedback.rejected} rejected, ${s.feedback.failed} failed`,
    );
    if (s.feedback.lastError) lines.push(`           last failure: ${s.feedback.lastError}`);
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
  const extras = `${flags.clients ? `, ${flags.clients} clients` : ''}${flags.feedback ? ', with feedback' : ''}`;
  process.stderr.write(`gantry load: ${model} on ${server.url} at ${flags.rps} rps ${what}${extras}\n`);
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
