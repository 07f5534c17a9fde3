import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { type Admin, parseModelName } from '../admin';
import { statusMessage } from '../describe';
import type { VersionManager } from '../manager';
import type { ServingState } from '../state';
import { header } from './headers';

export interface AdminRoutesOptions {
  admin: Admin;
  manager: VersionManager;
  state: ServingState;
}

/**
 * The admin API under /v1/admin: models, labels and traffic. Every route checks the bearer token
 * first (the hook is this plugin's own, so no other route sees it); the bodies are checked by
 * serving/admin.ts's schemas.
 */
export const adminRoutes: FastifyPluginAsync<AdminRoutesOptions> = async (app, { admin, manager, state }) => {
  app.addHook('onRequest', async (request) => admin.authorize(header(request, 'authorization')));
  const name = (request: FastifyRequest) => parseModelName((request.params as { name: string }).name);
  app.get('/v1/admin/state', async () => ({
    state: state.snapshot(),
    models: manager.modelNames().map((m) => ({ name: m, ...statusMessage(manager.status(m)) })),
  }));
  app.put('/v1/admin/models/:name', async (request) => {
    const model = name(request);
    const config = await admin.putModel(model, request.body ?? {});
    return { config, ...statusMessage(manager.status(model)) };
  });
  app.delete('/v1/admin/models/:name', async (request) => {
    await admin.removeModel(name(request));
    return { removed: true };
  });
  app.post('/v1/admin/models/:name/reload', async (request) => {
    const model = name(request);
    await admin.reloadModel(model);
    return statusMessage(manager.status(model));
  });
  app.put('/v1/admin/models/:name/labels/:label', async (request) => {
    const model = name(request);
    await admin.setLabel(model, (request.params as { label: string }).label, request.body);
    return { version_labels: manager.config(model)?.version_labels ?? {} };
  });
  app.delete('/v1/admin/models/:name/labels/:label', async (request) => {
    const model = name(request);
    await admin.deleteLabel(model, (request.params as { label: string }).label);
    return { version_labels: manager.config(model)?.version_labels ?? {} };
  });
  app.put('/v1/admin/models/:name/traffic', async (request) => ({
    traffic: await admin.setTraffic(name(request), request.body),
  }));
  app.delete('/v1/admin/models/:name/traffic', async (request) => {
    await admin.clearTraffic(name(request));
    return { traffic: null };
  });
};
