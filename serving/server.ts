import { open } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { selectBackend, type BackendReport } from '../engine/backend';
import { Admin } from './admin';
import { parseServerOptions, readModelConfigFile, type ServerOptions, type ServerOptionsInput } from './config';
import { FeedbackStore } from './feedback';
import { FeedbackAuth } from './feedback-auth';
import { serveRawPredict } from './grpc/raw-predict';
import { guardGrpcServer } from './grpc/limits';
import { bindGrpc, createAdminGrpcServer, createGrpcServer } from './grpc/server';
import { Inference } from './inference';
import type { Servable, LoadOptions } from './loader';
import { silentLogger, type Logger } from './log';
import { VersionManager } from './manager';
import { ServingMetrics } from './metrics';
import { createRestServer } from './rest/server';
import { Router } from './router';
import { RepositorySource } from './source';
import { ServingState } from './state';

/**
 * `gantry serve` as a library: wires source → manager → router → batcher → the two front doors,
 * selects the TensorFlow.js backend once, loads what the repository holds, then listens.
 * Used by the CLI command and by the tests (ports 0 = free ports).
 */

export interface ModelServer {
  restPort: number | null;
  grpcPort: number | null;
  /** Where the admin REST API answers: its own port, the REST port (adminPort 'same'), or null. */
  adminPort: number | null;
  /** The admin plane's gRPC port (ModelService, on adminHost), or null. */
  adminGrpcPort: number | null;
  adminHost: string;
  /** REST, gRPC and admin speak TLS (tlsCertFile/tlsKeyFile). */
  tls: boolean;
  backend: BackendReport;
  metrics: ServingMetrics;
  manager: VersionManager;
  /** Polls the repository now and applies what it finds (tests; the server polls by itself). */
  poll(): Promise<void>;
  close(): Promise<void>;
}

export interface ModelServerHooks {
  /** Replaces the file loader (tests). */
  loadServable?: (path: string, options: LoadOptions) => Promise<Servable>;
  logger?: Logger;
}

/** A PEM file, bounded: a certificate chain or key is a few KiB, never a megabyte. */
async function readPem(file: string, what: string): Promise<Buffer> {
  const limit = 1024 * 1024;
  try {
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(limit + 1);
      const { bytesRead } = await handle.read(buffer, 0, limit + 1, 0);
      if (bytesRead > limit) throw new Error(`larger than ${limit} bytes`);
      const pem = buffer.subarray(0, bytesRead);
      if (!pem.includes('-----BEGIN ')) throw new Error('not PEM (no -----BEGIN line)');
      return pem;
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new Error(`invalid server options: ${what} ${file}: ${(error as Error).message}`);
  }
}

export async function startModelServer(input: ServerOptionsInput, hooks: ModelServerHooks = {}): Promise<ModelServer> {
  const options: ServerOptions = parseServerOptions(input);
  const backend = await selectBackend();
  const modelConfig =
    options.modelConfig ?? (options.modelConfigFile ? await readModelConfigFile(options.modelConfigFile) : undefined);
  const state = await ServingState.open({ basePath: options.modelBasePath, modelConfig, stateFile: options.stateFile });
  const metrics = new ServingMetrics();
  let log: Logger = hooks.logger ?? silentLogger;
  const manager = new VersionManager({
    load: { warmup: options.warmup },
    batching: options.batching,
    metrics,
    log: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
    loadServable: hooks.loadServable,
    // Called only for versions unloaded after the first load, so `feedback` (below) exists by then.
    forgetVersion: (model, version) => feedback.forgetVersion(model, version),
  });
  const source = new RepositorySource(
    () => state.models(),
    (snapshots) => manager.apply(snapshots),
    options.pollIntervalMs,
    {
      info: (m) => log.info(m),
      warn: (m) => log.warn(m),
      error: (m) => log.error(m),
    },
  );
  const router = new Router(manager, state);
  const feedback = new FeedbackStore(
    metrics,
    options.feedbackWindow,
    options.feedbackMemory,
    options.feedbackMemoryBytes,
  );
  const feedbackAuth = new FeedbackAuth(options.feedbackTokens, options.anonymousFeedback);
  const inference = new Inference({
    manager,
    router,
    metrics,
    feedback,
    requestTimeoutMs: options.requestTimeoutMs,
    // A request larger than a whole queue could never be admitted; refuse it by size instead.
    maxRowsPerRequest: options.batching.max_batch_size * options.batching.max_enqueued_batches,
    imageLimits: {
      maxImageBytes: options.imageMaxBytes,
      maxRequestBytes: options.imageMaxRequestBytes,
      maxPixels: options.imageMaxPixels,
    },
    log: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
  });
  const admin = new Admin({ state, manager, source }, options.adminToken);
  let started = false;
  const ready = () => {
    const reasons: string[] = [];
    if (!started) reasons.push('the first load of the repository is still running');
    for (const name of manager.modelNames()) {
      const statuses = manager.status(name);
      if (statuses.length > 0 && manager.availableVersions(name).length === 0)
        reasons.push(`model ${name} has no AVAILABLE version`);
    }
    return { ready: reasons.length === 0, reasons };
  };

  let rest: FastifyInstance | undefined;
  let adminRest: FastifyInstance | undefined;
  let adminPort: number | null = null;
  let grpcServer: grpc.Server | undefined;
  let adminGrpc: grpc.Server | undefined;
  let adminGrpcPort: number | null = null;
  let restPort: number | null = null;
  let grpcPort: number | null = null;
  const tls =
    options.tlsCertFile && options.tlsKeyFile
      ? {
          cert: await readPem(options.tlsCertFile, 'TLS certificate'),
          key: await readPem(options.tlsKeyFile, 'TLS key'),
        }
      : undefined;
  const clientCa = options.tlsClientCaFile ? await readPem(options.tlsClientCaFile, 'TLS client CA') : undefined;
  const restDeps = {
    https: tls,
    inference,
    manager,
    router,
    state,
    admin,
    feedback,
    feedbackAuth,
    metrics,
    backend,
    bodyLimitBytes: options.bodyLimitBytes,
    requestTimeoutMs: options.requestTimeoutMs,
    headersTimeoutMs: options.headersTimeoutMs,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs,
    socketIdleTimeoutMs: options.socketIdleTimeoutMs,
    stickyHeader: options.stickyHeader,
    logLevel: options.logLevel,
    ready,
  };
  try {
    if (typeof options.adminPort === 'number') {
      adminRest = await createRestServer({
        ...restDeps,
        serves: { public: false, admin: true },
        // Mutual TLS on the admin port only: predict clients need no certificate of their own.
        https: tls && clientCa ? { ...tls, ca: clientCa, requestCert: true, rejectUnauthorized: true } : tls,
      });
      await adminRest.listen({ host: options.adminHost, port: options.adminPort });
      adminPort = (adminRest.server.address() as AddressInfo).port;
    }
    if (options.restPort !== null) {
      rest = await createRestServer({ ...restDeps, serves: { public: true, admin: options.adminPort === 'same' } });
      if (!hooks.logger && options.logLevel !== 'silent')
        log = { info: (m) => rest!.log.info(m), warn: (m) => rest!.log.warn(m), error: (m) => rest!.log.error(m) };
      await rest.listen({ host: options.host, port: options.restPort });
      restPort = (rest.server.address() as AddressInfo).port;
      if (options.adminPort === 'same') adminPort = restPort;
    }
    if (options.grpcPort !== null) {
      grpcServer = createGrpcServer({
        inference,
        manager,
        router,
        admin,
        bodyLimitBytes: options.bodyLimitBytes,
        stickyHeader: options.stickyHeader,
        limits: options.grpcLimits,
        // Admin apart (or off): the public port does not reload the config, as its REST twin has no admin route.
        servesAdmin: options.adminPort === 'same',
      });
      grpcPort = await bindGrpc(grpcServer, options.host, options.grpcPort, tls);
      serveRawPredict(grpcServer, options.bodyLimitBytes);
      guardGrpcServer(grpcServer, options.grpcLimits, options.grpcCallTimeoutMs ?? options.requestTimeoutMs);
    }
    if (options.adminGrpcPort !== null) {
      adminGrpc = createAdminGrpcServer({
        manager,
        router,
        admin,
        bodyLimitBytes: options.bodyLimitBytes,
        limits: options.grpcLimits,
      });
      adminGrpcPort = await bindGrpc(
        adminGrpc,
        options.adminHost,
        options.adminGrpcPort,
        tls && clientCa ? { ...tls, ca: clientCa } : tls,
      );
      guardGrpcServer(adminGrpc, options.grpcLimits, options.grpcCallTimeoutMs ?? options.requestTimeoutMs);
    }
    log.info(`backend ${backend.name} (engine "${backend.engineBackend}", tfjs ${backend.tfjsVersion})`);
    for (const note of state.notes) log.warn(note);
    // Listening first, loading second: /healthz answers while big models load, /readyz says when done.
    await source.start();
    started = true;
  } catch (error) {
    await source.stop();
    await rest?.close();
    await adminRest?.close();
    grpcServer?.forceShutdown();
    adminGrpc?.forceShutdown();
    await manager.close();
    await state.close();
    throw error;
  }

  return {
    restPort,
    grpcPort,
    adminPort,
    adminGrpcPort,
    adminHost: options.adminPort === 'same' ? options.host : options.adminHost,
    tls: tls !== undefined,
    backend,
    metrics,
    manager,
    poll: () => source.poll(),
    async close() {
      await source.stop();
      await Promise.all([
        rest?.close(),
        adminRest?.close(),
        ...[grpcServer, adminGrpc].map(
          (door) =>
            new Promise<void>((resolve) => {
              if (!door) return resolve();
              door.tryShutdown(() => resolve());
              // In-flight calls get a moment; then the door closes regardless.
              setTimeout(() => {
                door.forceShutdown();
                resolve();
              }, 2000).unref();
            }),
        ),
      ]);
      await manager.close();
      // Last: the state file is this server's until here.
      await state.close();
    },
  };
}
