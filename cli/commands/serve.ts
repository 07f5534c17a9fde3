import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { gantryHome } from '../../control/home';
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
  pollSeconds: z.coerce.number().min(0.01).max(3600),
  batching: z.boolean(),
  maxBatchSize: z.coerce.number().int().min(1),
  batchTimeoutMicros: z.coerce.number().int().min(0),
  maxEnqueuedBatches: z.coerce.number().int().min(1),
  adminTokenFile: z.string().min(1).optional(),
  stateFile: z.string().min(1).optional(),
  requestTimeoutMs: z.coerce.number().int().min(1),
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
  pollSeconds: string;
  batching: boolean;
  maxBatchSize: string;
  batchTimeoutMicros: string;
  maxEnqueuedBatches: string;
  adminTokenFile?: string;
  stateFile?: string;
  requestTimeoutMs: string;
  bodyLimitMb: string;
  warmup: boolean;
  logLevel: string;
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
  const modelBasePath = flags.modelBasePath ?? (flags.modelConfigFile ? undefined : home.modelRepositoryDir);
  let server;
  try {
    server = await startModelServer({
      modelBasePath,
      modelConfigFile: flags.modelConfigFile,
      host: flags.host,
      restPort: flags.restPort === 'off' ? null : flags.restPort,
      grpcPort: flags.grpcPort === 'off' ? null : flags.grpcPort,
      pollIntervalMs: Math.round(flags.pollSeconds * 1000),
      batching: {
        enabled: flags.batching,
        max_batch_size: flags.maxBatchSize,
        batch_timeout_micros: flags.batchTimeoutMicros,
        max_enqueued_batches: flags.maxEnqueuedBatches,
      },
      adminToken,
      stateFile: flags.stateFile ?? path.join(home.root, 'serving-state.json'),
      requestTimeoutMs: flags.requestTimeoutMs,
      bodyLimitBytes: Math.round(flags.bodyLimitMb * 1024 * 1024),
      warmup: flags.warmup,
      logLevel: flags.logLevel,
    });
  } catch (error) {
    const message = (error as Error).message;
    throw /invalid server options|model config file|state file/.test(message) ? new UsageError(message) : error;
  }
  const where = [
    server.restPort !== null ? `REST http://${flags.host}:${server.restPort}` : undefined,
    server.grpcPort !== null ? `gRPC ${flags.host}:${server.grpcPort}` : undefined,
  ].filter(Boolean);
  console.log(
    `gantry serve: ${where.join(', ')} — backend ${server.backend.name}; models from ` +
      `${modelBasePath ?? flags.modelConfigFile}; admin API ${adminToken ? 'on' : 'off (no token)'}`,
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
