import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Admin } from '../admin';
import type { BackendReport } from '../../engine/backend';
import { asServingError, clientMessage, httpStatusOf, ServingError } from '../errors';
import type { FeedbackStore } from '../feedback';
import type { FeedbackAuth } from '../feedback-auth';
import type { Inference } from '../inference';
import type { VersionManager } from '../manager';
import type { ServingMetrics } from '../metrics';
import type { Router } from '../router';
import type { ServingState } from '../state';
import { adminRoutes } from './admin';
import { bodyParsers } from './bodies';
import { healthRoutes } from './health';
import { metricsRoutes } from './metrics';
import { predictRoutes } from './predict';
import { statusRoutes } from './status';

/**
 * The REST front door: TF Serving's paths and JSON shapes, errors as {"error": "…"} with TF
 * Serving's status mapping, plus Gantry's list, health, feedback, metrics and admin endpoints.
 * It only translates: every predict goes through Inference. Each group of routes is a fastify
 * plugin of its own (this folder); this file sets what they share: body parsing and errors.
 */

export interface RestDeps {
  inference: Inference;
  manager: VersionManager;
  router: Router;
  state: ServingState;
  admin: Admin;
  feedback: FeedbackStore;
  /** Who may send :feedback; absent = anyone (tests that build the REST door alone). */
  feedbackAuth?: FeedbackAuth;
  metrics: ServingMetrics;
  backend: BackendReport;
  bodyLimitBytes: number;
  requestTimeoutMs: number;
  /** Slow-loris bounds (serving/config.ts says each); absent: 10 s, 72 s, 120 s. */
  headersTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  socketIdleTimeoutMs?: number;
  stickyHeader: string;
  logLevel: string;
  ready(): { ready: boolean; reasons: string[] };
  /** Which routes this listener serves: the public ones (predict, status, health, metrics), the admin API, or both. */
  serves?: { public: boolean; admin: boolean };
  /** HTTPS with this PEM certificate and key; `ca` + requestCert: clients must present a certificate it signed. */
  https?: { cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean };
}

function sendError(reply: FastifyReply, error: ServingError): FastifyReply {
  return reply.code(httpStatusOf(error.code)).send({ error: clientMessage(error.message) });
}

export async function createRestServer(deps: RestDeps): Promise<FastifyInstance> {
  const { inference, manager, router, state, admin, feedback, metrics } = deps;
  // Node checks the request and headers timeouts of its connections on a timer (every 30 s by default); checked
  // four times per headers timeout, a slow client is cut soon after its timeout, not up to 30 s late.
  const headersTimeout = Math.min(deps.headersTimeoutMs ?? 10_000, deps.requestTimeoutMs);
  const timeouts = {
    headersTimeout,
    requestTimeout: deps.requestTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
  // fastify types an https instance apart; the routes are the same, so it is used as the http one.
  const app = (Fastify as (options: object) => FastifyInstance)({
    // http.createServer / https.createServer take the timeouts beside the TLS options.
    ...(deps.https ? { https: { ...deps.https, ...timeouts } } : { http: timeouts }),
    logger: deps.logLevel === 'silent' ? false : { level: deps.logLevel },
    // A line per request would cost more than the request; metrics count them instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimitBytes,
    // Receiving the whole request may take at most the request timeout (slow-loris bound).
    requestTimeout: deps.requestTimeoutMs,
    keepAliveTimeout: deps.keepAliveTimeoutMs ?? 72_000,
    // A socket silent both ways (a client that stopped reading its answer, or sending) is destroyed.
    connectionTimeout: Math.max(deps.socketIdleTimeoutMs ?? 120_000, deps.requestTimeoutMs),
    forceCloseConnections: true,
    return503OnClosing: true,
  });

  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof ServingError) return sendError(reply, error);
    const fastifyError = error as { statusCode?: number; message: string };
    if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      return reply.code(fastifyError.statusCode).send({ error: clientMessage(fastifyError.message) });
    }
    app.log.error(error);
    return sendError(reply, asServingError(error));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: clientMessage(`Malformed request: ${request.method} ${request.url.split('?')[0]}`) }),
  );

  // Plugin options carry only what each group needs (a `logLevel` among them would set the
  // plugin's own log level).
  await app.register(bodyParsers);
  const serves = deps.serves ?? { public: true, admin: true };
  if (serves.public) {
    await app.register(healthRoutes, { ready: () => deps.ready() });
    await app.register(metricsRoutes, { metrics });
    await app.register(statusRoutes, { inference, manager, router, state, backend: deps.backend });
    await app.register(predictRoutes, {
      inference,
      manager,
      feedback,
      feedbackAuth: deps.feedbackAuth,
      stickyHeader: deps.stickyHeader,
    });
  }
  // On a listener of its own the admin API is not reachable from the public port (404 there).
  if (serves.admin) await app.register(adminRoutes, { admin, manager, state });

  return app;
}
