import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { findRunningEmbeddedTemporal } from './embedded-temporal';
import { gantryHome, type GantryHome } from './home';
import { temporalTargetFromEnv, type TemporalTarget } from './temporal-env';

/**
 * Which Temporal server this process talks to: TEMPORAL_ADDRESS (a real cluster) first, then the
 * embedded server that `gantry dev` recorded in GANTRY_HOME.
 */
export async function resolveTemporalTarget(
  home: GantryHome = gantryHome(),
): Promise<TemporalTarget & { origin: string }> {
  const fromEnv = temporalTargetFromEnv();
  if (fromEnv) return { ...fromEnv, origin: 'TEMPORAL_ADDRESS' };
  const embedded = await findRunningEmbeddedTemporal(home);
  if (embedded)
    return {
      address: embedded.address,
      namespace: embedded.namespace,
      origin: `embedded server (pid ${embedded.pid})`,
    };
  throw new Error(
    `no Temporal server: TEMPORAL_ADDRESS is unset and no embedded server is running for ${home.root}. ` +
      'Start one with `gantry dev` (in another terminal), or set TEMPORAL_ADDRESS.',
  );
}

function connectionOptions(target: TemporalTarget) {
  return { address: target.address, tls: target.tls, apiKey: target.apiKey, connectTimeout: target.connectTimeoutMs };
}

export async function connectClient(
  target?: TemporalTarget,
): Promise<{ client: Client; connection: Connection; target: TemporalTarget }> {
  const resolved = target ?? (await resolveTemporalTarget());
  let connection: Connection;
  try {
    connection = await Connection.connect(connectionOptions(resolved));
  } catch (error) {
    throw new Error(
      `cannot reach Temporal at ${resolved.address} (namespace ${resolved.namespace}): ${(error as Error).message}`,
    );
  }
  return { client: new Client({ connection, namespace: resolved.namespace }), connection, target: resolved };
}

/** Runs `fn` with a client of this process's Temporal server (resolveTemporalTarget); closes it after. */
export async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const { client, connection } = await connectClient();
  try {
    return await fn(client);
  } finally {
    await connection.close();
  }
}

export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  return NativeConnection.connect(connectionOptions(target));
}
