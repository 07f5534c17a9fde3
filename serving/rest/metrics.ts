import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ServingMetrics } from '../metrics';

/**
 * The server's metrics: Prometheus text at TF Serving's path and at the usual /metrics, and the
 * same registry as data for the rollout's monitor (serving/metrics-snapshot.ts reads it).
 */
export const metricsRoutes: FastifyPluginAsync<{ metrics: ServingMetrics }> = async (app, { metrics }) => {
  const prometheusText = async (_request: FastifyRequest, reply: FastifyReply) =>
    reply.type(metrics.contentType).send(await metrics.text());
  app.get('/monitoring/prometheus/metrics', prometheusText);
  app.get('/metrics', prometheusText);
  app.get('/monitoring/metrics.json', async () => metrics.json());
};
