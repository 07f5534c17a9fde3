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
    requestTimeoutMs: z.number().int().min(1).max(3_600_000).default(30_000),
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
