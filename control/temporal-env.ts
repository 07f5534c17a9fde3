import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { durationMs } from '../pipelines/duration';
import { DurationSchema } from '../pipelines/spec';
import { issueLines } from '../validation/issues';

/**
 * Settings for reaching a real Temporal cluster (self-hosted or Temporal Cloud), read from the
 * environment under Temporal's own variable names so that one set of variables drives the
 * `temporal` CLI and Gantry alike.
 */
const TemporalEnvSchema = z.object({
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port, e.g. my-ns.a1b2c.tmprl.cloud:7233')
    .optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_API_KEY: z.string().min(1).optional(),
  TEMPORAL_TLS: z.enum(['true', 'false', '1', '0']).optional(),
  TEMPORAL_TLS_CLIENT_CERT_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_CLIENT_KEY_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  // How long a command waits for the server before it says it cannot reach it (the SDK's default is 10s).
  GANTRY_CONNECT_TIMEOUT: DurationSchema.transform(durationMs).optional(),
});

export interface TemporalTarget {
  address: string;
  namespace: string;
  tls?: {
    serverNameOverride?: string;
    serverRootCACertificate?: Buffer;
    clientCertPair?: { crt: Buffer; key: Buffer };
  };
  apiKey?: string;
  connectTimeoutMs?: number;
}

/** A setting the user got wrong; the CLI exits with 2 as for any other bad input. */
export class ConfigError extends Error {
  readonly exitCode = 2;
}

/** The cluster named by the environment, or undefined when TEMPORAL_ADDRESS is unset. */
export function temporalTargetFromEnv(env: NodeJS.ProcessEnv = process.env): TemporalTarget | undefined {
  const parsed = TemporalEnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(`invalid Temporal settings in the environment:\n  ${issueLines(parsed.error).join('\n  ')}`);
  }
  const e = parsed.data;
  if (!e.TEMPORAL_ADDRESS) return undefined;
  if (Boolean(e.TEMPORAL_TLS_CLIENT_CERT_PATH) !== Boolean(e.TEMPORAL_TLS_CLIENT_KEY_PATH)) {
    throw new ConfigError('TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH: set both or neither');
  }
  // An API key or a client certificate implies TLS (Temporal Cloud refuses plaintext).
  const wantsTls =
    e.TEMPORAL_TLS === 'true' ||
    e.TEMPORAL_TLS === '1' ||
    (e.TEMPORAL_TLS === undefined && Boolean(e.TEMPORAL_API_KEY || e.TEMPORAL_TLS_CLIENT_CERT_PATH));
  const read = (file: string, variable: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new ConfigError(`${variable}: cannot read ${file}: ${(error as Error).message}`);
    }
  };
  return {
    address: e.TEMPORAL_ADDRESS,
    namespace: e.TEMPORAL_NAMESPACE,
    apiKey: e.TEMPORAL_API_KEY,
    connectTimeoutMs: e.GANTRY_CONNECT_TIMEOUT,
    tls: wantsTls
      ? {
          serverNameOverride: e.TEMPORAL_TLS_SERVER_NAME,
          serverRootCACertificate: e.TEMPORAL_TLS_SERVER_CA_CERT_PATH
            ? read(e.TEMPORAL_TLS_SERVER_CA_CERT_PATH, 'TEMPORAL_TLS_SERVER_CA_CERT_PATH')
            : undefined,
          clientCertPair:
            e.TEMPORAL_TLS_CLIENT_CERT_PATH && e.TEMPORAL_TLS_CLIENT_KEY_PATH
              ? {
                  crt: read(e.TEMPORAL_TLS_CLIENT_CERT_PATH, 'TEMPORAL_TLS_CLIENT_CERT_PATH'),
                  key: read(e.TEMPORAL_TLS_CLIENT_KEY_PATH, 'TEMPORAL_TLS_CLIENT_KEY_PATH'),
                }
              : undefined,
        }
      : undefined,
  };
}
