import { ModelRepository, METADATA_FILE } from '../artifacts/model-repository';
import { publishVersionUpdate, type PublishInput } from '../workflows/api';
import type { ActivityDeps } from './deps';
import { checkedSpec } from './failures';
import { registryHandle } from '../control/registry';

/**
 * Writes a blessed version into the model repository (atomically: a server never sees half a
 * version), then tells the registry, which moves the alias to it — unless a rollout will decide.
 */
export function createPublishActivity(deps: ActivityDeps) {
  return async function publish({
    runId,
    spec: rawSpec,
    version,
    modelUri,
    evaluation,
    moveAlias,
  }: PublishInput): Promise<{ publishedPath: string }> {
    const spec = checkedSpec(rawSpec);
    const repository = new ModelRepository(deps.home.modelRepositoryDir);
    const metadata = {
      model: spec.model.name,
      version,
      runId,
      architecture: spec.model.architecture,
      signature: {
        inputs: { input: { dtype: 'float32', note: 'raw pixel values 0..255' } },
        outputs: { probabilities: { dtype: 'float32' } },
      },
      metrics: evaluation.candidate,
      reasons: evaluation.reasons,
      gitCommit: deps.gitCommit,
    };
    const publishedPath = await repository.publish(spec.model.name, version, {
      'model.json': await deps.store.get(`${modelUri}/model.json`),
      'weights.bin': await deps.store.get(`${modelUri}/weights.bin`),
      [METADATA_FILE]: JSON.stringify(metadata, null, 2),
    });
    const registry = registryHandle(deps.client, spec.model.name);
    await registry.executeUpdate(publishVersionUpdate, {
      args: [{ version, publishedPath, alias: moveAlias === false ? null : spec.deployment.alias }],
    });
    return { publishedPath };
  };
}
