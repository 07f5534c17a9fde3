import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { gantryHome } from '../../control/home';
import { parseFeedbackTokens, type FeedbackToken } from '../../serving/feedback-auth';
import { parseGrpcChannelArguments } from '../../serving/config';
import { startModelServer } from '../../serving/server';
import { badFlags, UsageError } from '../errors';

/**
 * `gantry serve`: the model server in the foreground until Ctrl-C / SIGTERM. Serves the model
 * repository (by default the one the pipeline publishes to, `GANTRY_HOME/models`) over TF
 * Serving's REST and gRPC APIs.
 */

const port = z.coerce.number().int().min(0).max(65535);
const FlagsSchema = z.object({
  modelBasePath: z.string().min(1).optional(),
  modelConfigFile: z.string().min(1).optional(),
  host: z.string().min(1),
  restPort: z.union([z.literal('off'), port]),
  grpcPort: z.union([z.literal('off'), port]),
  adminPort: z.union([z.literal('off'), z.literal('same'), port]),
  adminAddress: z.string().min(1),
  adminGrpcPort: z.union([z.literal('off'), port]).default('off'),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  tlsClientCa: z.string().min(1).optional(),
  pollSeconds: z.coerce.number().min(0.01).max(3600),
  batching: z.boolean(),
  maxBatchSize: z.coerce.number().int().min(1),
  batchTimeoutMicros: z.coerce.number().int().min(0),
  maxEnqueuedBatches: z.coerce.number().int().min(1),
  adminTokenFile: z.string().min(1).optional(),
  feedbackTokenFile: z.string().min(1).optional(),
  allowAnonymousFeedback: z.boolean().optional(),
  feedbackMemoryMb: z.coerce.number().min(0.0625).max(65536),
  stateFile: z.string().min(1).optional(),
  requestTimeoutMs: z.coerce.number().int().min(1),
  headersTimeoutMs: z.coerce.number().int().min(1),
  keepAliveTimeoutMs: z.coerce.number().int().min(1),
  socketIdleTimeoutMs: z.coerce.number().int().min(1),
  grpcCallTimeoutMs: z.coerce.number().int().min(1).optional(),
  grpcChannelArguments: z.string().optional(),
  bodyLimitMb: z.coerce.number().min(0.001).max(1024),
  warmup: z.boolean(),
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']),
});

export interface ServeFlags {
  modelBasePath?: string;
  modelConfigFile?: string;
  host: string;
  restPort: string;
  grpcPort: string;
  adminPort: string;
  adminAddress: string;
  adminGrpcPort?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  pollSeconds: string;
  batching: boolean;
  maxBatchSize: string;
  batchTimeoutMicros: string;
  maxEnqueuedBatches: string;
  adminTokenFile?: string;
  feedbackTokenFile?: string;
  allowAnonymousFeedback?: boolean;
  feedbackMemoryMb: string;
  stateFile?: string;
  requestTimeoutMs: string;
  headersTimeoutMs: string;
  keepAliveTimeoutMs: string;
  socketIdleTimeoutMs: string;
  grpcCallTimeoutMs?: string;
  grpcChannelArguments?: string;
  bodyLimitMb: string;
  warmup: boolean;
  logLevel: string;
}

/**
 * The state file of a server started without --state-file: its own, keyed by what it serves and where
 * it listens (GANTRY_HOME/serving-state/<key>.json), so a server started by hand never loads the
 * state of another (the local stack's server keeps GANTRY_HOME/serving-state.json, named explicitly).
 */
export function defaultStateFile(
  homeRoot: string,
  identity: { modelBasePath?: string; modelConfigFile?: string; restPort: number | 'off'; grpcPort: number | 'off' },
): string {
  const key = createHash('sha256')
    .update(
      JSON.stringify([
        identity.modelBasePath ? path.resolve(identity.modelBasePath) : null,
        identity.modelConfigFile ? path.resolve(identity.modelConfigFile) : null,
        identity.restPort,
        identity.grpcPort,
      ]),
    )
    .digest('hex')
    .slice(0, 16);
  return path.join(homeRoot, 'serving-state', `${key}.json`);
}

export async function serveCommand(raw: ServeFlags): Promise<void> {
  const parsed = FlagsSchema.safeParse(raw);
  if (!parsed.success) throw badFlags(parsed.error);
  const flags = parsed.data;
  const home = gantryHome();
  let adminToken = process.env.GANTRY_SERVE_ADMIN_TOKEN || undefined;
  if (flags.adminTokenFile)
    adminToken = (
      await readFile(flags.adminTokenFile, 'utf8').catch((e: Error) => {
        throw new UsageError(`--admin-token-file: ${e.message}`);
      })
    ).trim();
  const feedbackTokens = await readFeedbackTokens(flags.feedbackTokenFile);
  const anonymousFeedback = feedbackTokens.length === 0 && flags.allowAnonymousFeedback === true;
  if (feedbackTokens.length > 0 && flags.allowAnonymousFeedback)
    throw new UsageError(
      '--allow-anonymous-feedback: not with feedback tokens (they exist to refuse anonymous feedback)',
    );
  let grpcLimits: Record<string, number> | undefined;
  try {
    grpcLimits = flags.grpcChannelArguments ? parseGrpcChannelArguments(flags.grpcChannelArguments) : undefined;
  } catch (error) {
    throw new UsageError(`--grpc-channel-arguments: ${(error as Error).message}`);
  }
  const modelBasePath = flags.modelBasePath ?? (flags.modelConfigFile ? undefined : home.modelRepositoryDir);
  const stateFile =
    flags.stateFile ??
    defaultStateFile(home.root, {
      modelBasePath,
      modelConfigFile: flags.modelConfigFile,
      restPort: flags.restPort,
      grpcPort: flags.grpcPort,
    });
  let server;
  try {
    server = await startModelServer({
      modelBasePath,
      modelConfigFile: flags.modelConfigFile,
      host: flags.host,
      restPort: flags.restPort === 'off' ? null : flags.restPort,
      grpcPort: flags.grpcPort === 'off' ? null : flags.grpcPort,
      adminPort: flags.adminPort === 'off' ? null : flags.adminPort,
      adminHost: flags.adminAddress,
      adminGrpcPort: flags.adminGrpcPort === 'off' ? null : flags.adminGrpcPort,
      tlsCertFile: flags.tlsCert,
      tlsKeyFile: flags.tlsKey,
      tlsClientCaFile: flags.tlsClientCa,
      pollIntervalMs: Math.round(flags.pollSeconds * 1000),
      batching: {
        enabled: flags.batching,
        max_batch_size: flags.maxBatchSize,
        batch_timeout_micros: flags.batchTimeoutMicros,
        max_enqueued_batches: flags.maxEnqueuedBatches,
      },
      adminToken,
      feedbackTokens,
      anonymousFeedback,
      feedbackMemoryBytes: Math.round(flags.feedbackMemoryMb * 1024 * 1024),
      stateFile,
      requestTimeoutMs: flags.requestTimeoutMs,
      headersTimeoutMs: flags.headersTimeoutMs,
      keepAliveTimeoutMs: flags.keepAliveTimeoutMs,
      socketIdleTimeoutMs: flags.socketIdleTimeoutMs,
      grpcCallTimeoutMs: flags.grpcCallTimeoutMs,
      grpcLimits,
      bodyLimitBytes: Math.round(flags.bodyLimitMb * 1024 * 1024),
      warmup: flags.warmup,
      logLevel: flags.logLevel,
    });
  } catch (error) {
    const message = (error as Error).message;
    throw /invalid server options|model config file|state file/.test(message) ? new UsageError(message) : error;
  }
  const scheme = server.tls ? 'https' : 'http';
  const where = [
    server.restPort !== null ? `REST ${scheme}://${flags.host}:${server.restPort}` : undefined,
    server.grpcPort !== null ? `gRPC ${flags.host}:${server.grpcPort}` : undefined,
    server.adminPort !== null ? `admin ${scheme}://${server.adminHost}:${server.adminPort}` : undefined,
    server.adminGrpcPort !== null ? `admin gRPC ${server.adminHost}:${server.adminGrpcPort}` : undefined,
  ].filter(Boolean);
  console.log(
    `gantry serve: ${where.join(', ')} — backend ${server.backend.name}; models from ` +
      `${modelBasePath ?? flags.modelConfigFile}; admin API ${adminToken ? 'on' : 'off (no token)'}; ` +
      `state ${stateFile}`,
  );
  if (feedbackTokens.length > 0)
    console.log(`  feedback: only with a token (${feedbackTokens.map((t) => t.name).join(', ')})`);
  else if (anonymousFeedback)
    console.warn(
      'gantry serve: WARNING: anonymous feedback is accepted (--allow-anonymous-feedback): anyone who can reach ' +
        'this port can move online accuracy and so steer canaries; use --feedback-token-file',
    );
  else
    console.warn(
      'gantry serve: :feedback is refused (no feedback token): give --feedback-token-file or GANTRY_FEEDBACK_TOKEN',
    );
  for (const name of server.manager.modelNames()) {
    console.log(
      `  ${name}: ${
        server.manager
          .status(name)
          .map((s) => `v${s.version} ${s.state}${s.error ? ` (${s.error})` : ''}`)
          .join(', ') || 'no versions yet'
      }`,
    );
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  console.log('gantry serve: stopping (in-flight requests finish first)');
  await server.close();
}

/** Feedback tokens from --feedback-token-file, else GANTRY_FEEDBACK_TOKEN (same syntax: `NAME:TOKEN` lines). */
async function readFeedbackTokens(file: string | undefined): Promise<FeedbackToken[]> {
  try {
    if (file) {
      const text = await readFile(file, 'utf8');
      const tokens = parseFeedbackTokens(text, file);
      if (tokens.length === 0) throw new Error(`${file}: no tokens in it`);
      return tokens;
    }
    const env = process.env.GANTRY_FEEDBACK_TOKEN;
    return env ? parseFeedbackTokens(env.replaceAll(',', '\n'), 'GANTRY_FEEDBACK_TOKEN') : [];
  } catch (error) {
    throw new UsageError(`${file ? '--feedback-token-file' : 'GANTRY_FEEDBACK_TOKEN'}: ${(error as Error).message}`);
  }
}
