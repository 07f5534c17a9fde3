import type { FastifyPluginAsync } from 'fastify';
import { metadataTarget, signatureDefMap, statusMessage, versionStatus } from '../describe';
import { asServingError, ServingError } from '../errors';
import type { CallContext, Inference } from '../inference';
import type { VersionManager } from '../manager';
import type { Router } from '../router';
import type { ServingState } from '../state';
import { describePolicy } from '../version-policy';
import { parseModelPath } from './paths';

export interface StatusRoutesOptions {
  inference: Inference;
  manager: VersionManager;
  router: Router;
  state: ServingState;
  /** The TensorFlow backend serving the models, as the list reports it. */
  backend: { name: string; engineBackend: string; tfjsVersion: string };
}

/**
 * What is served: Gantry's list of models (with the backend), and TF Serving's model status
 * (`GET /v1/models/NAME[/versions/N|/labels/L]`) and metadata (`…/metadata`). A failed status or
 * metadata call is counted like a failed model call.
 */
export const statusRoutes: FastifyPluginAsync<StatusRoutesOptions> = async (app, deps) => {
  const { inference, manager, router, state } = deps;

  app.get('/v1/models', async () => ({
    backend: { name: deps.backend.name, engine: deps.backend.engineBackend, tfjs: deps.backend.tfjsVersion },
    models: manager.modelNames().map((name) => {
      const config = manager.config(name)!;
      return {
        name,
        base_path: config.base_path,
        version_policy: describePolicy(config.model_version_policy),
        version_labels: config.version_labels,
        traffic: state.traffic(name) ?? null,
        ...statusMessage(manager.status(name)),
      };
    }),
  }));

  app.get('/v1/models/*', async (request) => {
    const path = parseModelPath((request.params as { '*': string })['*']);
    if (path.verb) throw new ServingError('NOT_FOUND', `Malformed request: ":${path.verb}" takes POST`);
    const context: CallContext = { api: path.metadata ? 'metadata' : 'status', protocol: 'rest' };
    try {
      if (path.metadata) {
        const { version, signature, others } = metadataTarget(manager, router, path.model, path);
        return {
          model_spec: { name: path.model, signature_name: '', version: String(version) },
          metadata: { signature_def: signatureDefMap(signature, others) },
        };
      }
      return statusMessage(versionStatus(manager, router, path.model, path));
    } catch (error) {
      inference.count(path, context, asServingError(error));
      throw error;
    }
  });
};
