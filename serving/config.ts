import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { describeIssues } from '../validation/issues';
import { FeedbackTokenSchema } from './feedback-auth';
import { CLIENT_KEY_HEADER } from './rest/headers';

/**
 * Configuration at every boundary of the server, checked by zod: the model config file (TF
 * Serving's ModelServerConfig in its protobuf-JSON form, so an existing config translates
 * one-for-one), batching parameters (TF Serving's names) and the server's own options.
 */

/**
 * A model name is one folder name: letters, digits, `_ . -`, not starting with a dot. The same
 * rule as the model repository's, and it cannot name `..` or contain a separator, so no name
 * reaches outside the base path.
 */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const LABEL_PATTERN = /^[a-zA-Z0-9_]+$/;

export const ModelNameSchema = z
  .string()
  .regex(
    MODEL_NAME_PATTERN,
    'must be 1-128 of [A-Za-z0-9_.-], not starting with "." (a model name is one folder name)',
  );
export const LabelSchema = z.string().regex(LABEL_PATTERN, 'must match [a-zA-Z0-9_]+');
/** Versions are positive integers; protobuf-JSON writes int64 as a string, so both are accepted. */
export const VersionNumberSchema = z
  .union([z.number(), z.string().regex(/^\d+$/, 'must be a positive integer').transform(Number)])
  .pipe(z.number().int().min(1).max(Number.MAX_SAFE_INTEGER));

export const VersionPolicySchema = z.union([
  z.object({ latest: z.object({ num_versions: z.number().int().min(1).max(1000).default(1) }).strict() }).strict(),
  z.object({ all: z.object({}).strict() }).strict(),
  z.object({ specific: z.object({ versions: z.array(VersionNumberSchema).min(1) }).strict() }).strict(),
]);
export type VersionPolicy = z.infer<typeof VersionPolicySchema>;
export const DEFAULT_VERSION_POLICY: VersionPolicy = { latest: { num_versions: 1 } };

export const ModelConfigSchema = z
  .object({
    name: ModelNameSchema,
    /** The model's folder, holding `<version>/` children (TF Serving's meaning of base_path). */
    base_path: z.string().min(1),
    model_platform: z.string().optional(),
    model_version_policy: VersionPolicySchema.default(DEFAULT_VERSION_POLICY),
    version_labels: z.record(LabelSchema, VersionNumberSchema).default({}),
  })
  .strict();
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

export const ModelServerConfigSchema = z
  .object({ model_config_list: z.object({ config: z.array(ModelConfigSchema) }).strict() })
  .strict()
  .superRefine((value, ctx) => {
    const seen = new Set<string>();
    value.model_config_list.config.forEach((model, i) => {
      if (seen.has(model.name))
        ctx.addIssue({
          code: 'custom',
          path: ['model_config_list', 'config', i, 'name'],
          message: `model "${model.name}" is listed twice`,
        });
      seen.add(model.name);
    });
  });
export type ModelServerConfig = z.infer<typeof ModelServerConfigSchema>;

export const BatchingSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Rows merged into one model call at most (a single larger request runs alone). */
    max_batch_size: z.number().int().min(1).max(100_000).default(64),
    /**
     * How long a batch may wait for more rows. 0 merges whatever arrived while the model was busy
     * (requests read in the same event-loop turn) and adds no wait when the server is idle.
     */
    batch_timeout_micros: z.number().int().min(0).max(10_000_000).default(0),
    /** Queue bound per version, in batches of max_batch_size rows; beyond it requests get 429. */
    max_enqueued_batches: z.number().int().min(1).max(100_000).default(64),
  })
  .strict();
export type BatchingOptions = z.infer<typeof BatchingSchema>;

/**
 * The gRPC door's connection limits, under gRPC's own channel-argument names (TF Serving's
 * --grpc_channel_arguments takes the same). Defaults are gRPC core's server defaults where it has
 * finite ones (keepalive, ping policy) and Envoy's edge-proxy advice where gRPC's is unlimited
 * (100 streams per connection, a 1 h idle timeout); a connection lives 30 min (±10 %) before a
 * GOAWAY sends its client to a fresh one (A9's MAX_CONNECTION_AGE, so an L4 balancer spreads load).
 */
const ms = (max: number) => z.number().int().min(1).max(max);
export const GrpcLimitsSchema = z
  .object({
    /** Calls in flight on one connection; the client queues the rest on its side. */
    'grpc.max_concurrent_streams': z.number().int().min(1).max(1_000_000).default(100),
    /** The server pings a connection silent this long, and drops it when the ack takes over the timeout. */
    'grpc.keepalive_time_ms': ms(2 ** 31 - 1).default(2 * 3600_000),
    'grpc.keepalive_timeout_ms': ms(3_600_000).default(20_000),
    /** A client ping sooner than this after the last one is a strike; past max_ping_strikes: GOAWAY too_many_pings. */
    'grpc.http2.min_recv_ping_interval_without_data_ms': z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .default(300_000),
    'grpc.http2.max_ping_strikes': z.number().int().min(0).max(1000).default(2),
    /** A connection without a call this long is closed (GOAWAY). */
    'grpc.max_connection_idle_ms': ms(2 ** 31 - 1).default(3600_000),
    /** A connection this old gets a GOAWAY; its calls in flight have the grace to finish, then it is closed. */
    'grpc.max_connection_age_ms': ms(2 ** 31 - 1).default(30 * 60_000),
    'grpc.max_connection_age_grace_ms': ms(2 ** 31 - 1).default(60_000),
  })
  .strict();
export type GrpcLimits = z.output<typeof GrpcLimitsSchema>;

/**
 * TF Serving's --grpc_channel_arguments form, `name=value,name=value` (numbers only), as an object GrpcLimitsSchema
 * then checks (an unknown name is refused there, naming it).
 */
export function parseGrpcChannelArguments(text: string): Record<string, number> {
  const limits: Record<string, number> = {};
  for (const pair of text.split(',').filter((p) => p.trim())) {
    const [name, value, extra] = pair.split('=').map((p) => p.trim());
    if (!name || value === undefined || extra !== undefined || !/^\d+$/.test(value))
      throw new Error(`"${pair}": expected name=value with a whole number (e.g. grpc.max_concurrent_streams=100)`);
    limits[name] = Number(value);
  }
  return limits;
}

export const ServerOptionsSchema = z
  .object({
    /** Serve every model folder under this path (each `<model>/<version>/`). */
    modelBasePath: z.string().min(1).optional(),
    /** A JSON ModelServerConfig file; when given, only the models it lists are served. */
    modelConfigFile: z.string().min(1).optional(),
    /** The same, as an object (tests, embedding). */
    modelConfig: ModelServerConfigSchema.optional(),
    host: z.string().min(1).default('127.0.0.1'),
    /** 0 = a free port; null = this door stays closed. */
    restPort: z.number().int().min(0).max(65535).nullable().default(8501),
    grpcPort: z.number().int().min(0).max(65535).nullable().default(8500),
    /**
     * The admin API's own port on `adminHost` (0 = a free port), apart from the public REST port;
     * 'same' = served on the REST port beside predict (the library's default); null = no admin door.
     */
    adminPort: z
      .union([z.number().int().min(0).max(65535), z.literal('same')])
      .nullable()
      .default('same'),
    adminHost: z.string().min(1).default('127.0.0.1'),
    /**
     * A gRPC listener on `adminHost` for TF Serving's ModelService (HandleReloadConfigRequest, GetModelStatus):
     * where TF Serving clients reload the config while the public gRPC port refuses it (adminPort not 'same').
     * 0 = a free port; null = none.
     */
    adminGrpcPort: z.number().int().min(0).max(65535).nullable().default(null),
    /** PEM files: with cert and key, REST, gRPC and the admin port speak TLS only. */
    tlsCertFile: z.string().min(1).optional(),
    tlsKeyFile: z.string().min(1).optional(),
    /** A CA (PEM): the admin port then accepts only clients with a certificate it signed (mutual TLS). */
    tlsClientCaFile: z.string().min(1).optional(),
    pollIntervalMs: z.number().int().min(10).max(3_600_000).default(1000),
    batching: BatchingSchema.default(BatchingSchema.parse({})),
    /** Bearer token for the admin API; without one the admin API refuses every call. */
    adminToken: z.string().min(16, 'must be at least 16 characters').optional(),
    /** Where the admin state (added/removed models, labels, traffic) is kept across restarts. */
    stateFile: z.string().min(1).optional(),
    bodyLimitBytes: z
      .number()
      .int()
      .min(1024)
      .max(1 << 30)
      .default(16 * 1024 * 1024),
    /** Longest a request may take: receiving its whole body over REST, and waiting for the model (both doors). */
    requestTimeoutMs: z.number().int().min(1).max(3_600_000).default(30_000),
    /**
     * REST connection bounds (Node's http server; slow-loris): the request line and headers must arrive within
     * headersTimeoutMs (Envoy's edge advice, 10 s; at most requestTimeoutMs), an idle keep-alive connection is
     * closed after keepAliveTimeoutMs (fastify's default) and a socket with no traffic either way after
     * socketIdleTimeoutMs (at least requestTimeoutMs, so a request waiting for the model is not cut).
     */
    headersTimeoutMs: z.number().int().min(1).max(3_600_000).default(10_000),
    keepAliveTimeoutMs: z.number().int().min(1).max(3_600_000).default(72_000),
    socketIdleTimeoutMs: z.number().int().min(1).max(3_600_000).default(120_000),
    /**
     * A gRPC call's server-side deadline from its first frame (default requestTimeoutMs): a call still open then
     * ends with DEADLINE_EXCEEDED and frees its stream, whether or not the client set a deadline or finished
     * sending.
     */
    grpcCallTimeoutMs: z.number().int().min(1).max(3_600_000).optional(),
    grpcLimits: GrpcLimitsSchema.default(GrpcLimitsSchema.parse({})),
    /** Image versions (serving/images.ts): encoded bytes of one image, of all a request's images, pixels per image. */
    imageMaxBytes: z
      .number()
      .int()
      .min(1024)
      .max(1 << 30)
      .default(4 * 1024 * 1024),
    imageMaxRequestBytes: z
      .number()
      .int()
      .min(1024)
      .max(1 << 30)
      .default(12 * 1024 * 1024),
    imageMaxPixels: z.number().int().min(1).max(1_000_000_000).default(25_000_000),
    /** Labelled predictions per version that the online accuracy is computed over. */
    feedbackWindow: z.number().int().min(1).max(10_000_000).default(1000),
    /** Predictions remembered for feedback (oldest forgotten first). */
    feedbackMemory: z.number().int().min(1).max(10_000_000).default(100_000),
    /** Bytes the predictions remembered for feedback may take (rows × row size and a fixed cost each). */
    feedbackMemoryBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(64 * 1024 ** 3)
      .default(64 * 1024 * 1024),
    /** Who may send :feedback (serving/feedback-auth.ts): with tokens, only bearers of one. */
    feedbackTokens: z.array(FeedbackTokenSchema).max(1000).default([]),
    /**
     * Without tokens: whether anyone may send feedback (true, as an embedding application or a test on a
     * guarded network may want) or nobody (`gantry serve` without a token: secure by default).
     */
    anonymousFeedback: z.boolean().default(true),
    /** Run one all-zeros request through each version before it turns AVAILABLE (beside warmup.json). */
    warmup: z.boolean().default(true),
    /** Header whose value makes the traffic split sticky (same key, same version). */
    stickyHeader: z.string().min(1).default(CLIENT_KEY_HEADER),
    logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']).default('silent'),
  })
  .strict()
  .superRefine((value, ctx) => {
    if (!value.modelBasePath && !value.modelConfigFile && !value.modelConfig && !value.stateFile) {
      ctx.addIssue({
        code: 'custom',
        path: ['modelBasePath'],
        message: 'give a model base path, a model config file, or a state file to start from',
      });
    }
    const names = value.feedbackTokens.map((t) => t.name);
    names.forEach((name, i) => {
      if (names.indexOf(name) !== i)
        ctx.addIssue({ code: 'custom', path: ['feedbackTokens', i, 'name'], message: `"${name}" is given twice` });
    });
    if (!value.tlsCertFile !== !value.tlsKeyFile)
      ctx.addIssue({
        code: 'custom',
        path: ['tlsCertFile'],
        message: 'give both tlsCertFile and tlsKeyFile, or neither',
      });
    if (value.tlsClientCaFile && !value.tlsCertFile)
      ctx.addIssue({
        code: 'custom',
        path: ['tlsClientCaFile'],
        message: 'mutual TLS needs tlsCertFile and tlsKeyFile',
      });
    if (value.modelConfigFile && value.modelConfig)
      ctx.addIssue({
        code: 'custom',
        path: ['modelConfigFile'],
        message: 'give modelConfigFile or modelConfig, not both',
      });
  });
export type ServerOptionsInput = z.input<typeof ServerOptionsSchema>;
export type ServerOptions = z.output<typeof ServerOptionsSchema>;

export function parseServerOptions(input: ServerOptionsInput): ServerOptions {
  const parsed = ServerOptionsSchema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid server options: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

export async function readModelConfigFile(file: string): Promise<ModelServerConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`model config file ${file}: ${(error as Error).message}`);
  }
  const parsed = ModelServerConfigSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`model config file ${file}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}
