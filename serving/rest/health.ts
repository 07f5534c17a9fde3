import type { FastifyPluginAsync } from 'fastify';

/** Liveness (the process answers) and readiness (the first load finished, every model is AVAILABLE). */
export const healthRoutes: FastifyPluginAsync<{ ready(): { ready: boolean; reasons: string[] } }> = async (
  app,
  { ready },
) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const { ready: isReady, reasons } = ready();
    return reply.code(isReady ? 200 : 503).send({ ready: isReady, reasons });
  });
};
