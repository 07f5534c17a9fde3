import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { WithStartWorkflowOperation, type Client } from '@temporalio/client';
import { ModelRepository, METADATA_FILE } from '../../artifacts/model-repository';
import { runLoad } from '../../control/load/generator';
import { deploymentPrefix, taskQueueOf, type Pool } from '../../control/task-queues';
import { ServingClient } from '../../serving/client';
import { startModelServer, type ModelServer } from '../../serving/server';
import { buildModel } from '../../training/architectures';
import { selectBackend, tf } from '../../engine/backend';
import { serializeModel, type ModelFiles } from '../../engine/model-files';
import { publishVersionUpdate, registerVersionUpdate, registryWorkflowId } from '../../workflows/api';
import { registryWorkflow } from '../../workflows/registry';
import { fashionMnistSlicer } from './examples';
import { createTestEnv, type TestEnv } from './env';
import { startInProcessWorkers, type InProcessWorkers } from './workers';

/**
 * Shared by the rollout and experiment tests: real Fashion-MNIST models (trained for a few
 * seconds, or made wrong on purpose), published the way the pipeline publishes them and
 * registered in the model's registry; and a model server that the control workers drive.
 */

export const ADMIN_TOKEN = 'deployment-test-admin-token-0123';
const FEATURE_SHAPE = [28, 28, 1];

/** A small MLP trained on `count` real training images (about 0.8 test accuracy with the defaults). */
export async function trainedModelFiles(seed: number, count = 4000, epochs = 3): Promise<ModelFiles> {
  const take = await fashionMnistSlicer();
  const examples = take('train', (seed * 5000) % 50_000, count);
  const model = buildModel(tf, 'mlp', { featureShape: FEATURE_SHAPE, numClasses: 10, seed }, { hiddenUnits: [64] });
  try {
    model.compile({ optimizer: tf.train.adam(0.002), loss: 'categoricalCrossentropy' });
    const xs = tf.tensor(Float32Array.from(examples.images), [count, ...FEATURE_SHAPE]);
    const ys = tf.oneHot(tf.tensor1d(Int32Array.from(examples.labels), 'int32'), 10);
    await model.fit(xs, ys, { epochs, batchSize: 64, shuffle: false, verbose: 0 });
    xs.dispose();
    ys.dispose();
    return await serializeModel(model);
  } finally {
    model.dispose();
  }
}

/** The same model with its output classes rotated by one: confident, fast, and wrong every time. */
export async function wrongLabelFiles(files: ModelFiles): Promise<ModelFiles> {
  const { deserializeModel } = await import('../../engine/model-files');
  const model = await deserializeModel(files['model.json'], files['weights.bin']);
  try {
    const last = model.layers[model.layers.length - 1]!;
    const [kernel, bias] = last.getWeights() as [tf.Tensor2D, tf.Tensor1D];
    const rotatedKernel = tf.concat([kernel.slice([0, 1], [-1, 9]), kernel.slice([0, 0], [-1, 1])], 1);
    const rotatedBias = tf.concat([bias.slice([1], [9]), bias.slice([0], [1])]);
    last.setWeights([rotatedKernel, rotatedBias]);
    return await serializeModel(model);
  } finally {
    model.dispose();
  }
}

/** Writes the version into the model repository and registers it (blessed, published), as the pipeline does. */
export async function publishVersion(
  env: TestEnv,
  client: Client,
  model: string,
  files: ModelFiles,
  options: {
    alias: string | null;
    reconcileInterval?: string;
    accuracy?: number;
    /** The dataset and spec a trained version names (default: placeholders). */
    lineage?: { datasetFingerprint: string; spec: unknown };
  },
): Promise<number> {
  const runId = `test-run-${randomBytes(4).toString('hex')}`;
  const startWorkflowOperation = new WithStartWorkflowOperation(registryWorkflow, {
    workflowId: registryWorkflowId(deploymentPrefix(), model),
    taskQueue: taskQueueOf('control'),
    args: [{ model, reconcileInterval: options.reconcileInterval ?? '1s' }],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
  const { version } = await client.workflow.executeUpdateWithStart(registerVersionUpdate, {
    startWorkflowOperation,
    args: [
      {
        artifactUri: `file:///unused/${runId}`,
        metrics: { testAccuracy: options.accuracy ?? 0.8, testLoss: 0.5, perClassAccuracy: [] },
        lineage: {
          runId,
          datasetFingerprint: 'test',
          spec: {},
          ...options.lineage,
          parentVersion: null,
          gitCommit: null,
          backend: 'test',
        },
        blessed: true,
        reasons: ['test fixture'],
      },
    ],
  });
  const metadata = {
    model,
    version,
    signature: { inputs: { input: { dtype: 'float32' } }, outputs: { probabilities: { dtype: 'float32' } } },
  };
  const publishedPath = await new ModelRepository(env.home.modelRepositoryDir).publish(model, version, {
    ...files,
    [METADATA_FILE]: JSON.stringify(metadata),
  });
  await client.workflow
    .getHandle(registryWorkflowId(deploymentPrefix(), model))
    .executeUpdate(publishVersionUpdate, { args: [{ version, publishedPath, alias: options.alias }] });
  return version;
}

/**
 * Live traffic on `model` (`gantry load`'s engine) until `stop`: `clients` sticky simulated users at `rps`
 * requests a second, each answer's true label sent back as feedback.
 */
export function startFeedbackLoad(
  server: ModelServer,
  model: string,
  { rps = 120, clients = 40 } = {},
): { stop(): Promise<void> } {
  const controller = new AbortController();
  const url = `http://127.0.0.1:${server.restPort}`;
  const done = runLoad(
    { model, server: { url }, rps, clients, feedback: true, progressIntervalMs: 60_000 },
    controller.signal,
  );
  return {
    async stop() {
      controller.abort();
      await done.catch(() => undefined);
    },
  };
}

export type FeedbackLoad = ReturnType<typeof startFeedbackLoad>;

/**
 * What a deployment test runs against: a fresh test env (named `name`), a deployment server over its model
 * repository with a client of it (`serving`), in-process workers of `pools`, and the live traffic the test
 * starts; `stop` ends them all, the server last.
 */
export async function startDeployment(name: string, pools: Pool[]) {
  await selectBackend();
  const env = await createTestEnv(name);
  const { server, client: serving } = await startDeploymentServer(env);
  let workers: InProcessWorkers;
  try {
    workers = await startInProcessWorkers(env, pools);
  } catch (error) {
    await server.close();
    throw error;
  }
  const deployment = {
    env,
    workers,
    server,
    serving,
    load: undefined as FeedbackLoad | undefined,
    startLoad(model: string, options?: { rps?: number; clients?: number }) {
      deployment.load = startFeedbackLoad(deployment.server, model, options);
    },
    async stop() {
      await deployment.load?.stop();
      await workers.stop();
      await deployment.server.close();
    },
  };
  return deployment;
}

export type Deployment = Awaited<ReturnType<typeof startDeployment>>;

/** A model server over the test's model repository, with the admin API on; listed for the workers in GANTRY_SERVERS. */
export async function startDeploymentServer(
  env: TestEnv,
  restPort = 0,
  stateName = 'serving-state.json',
): Promise<{ server: ModelServer; client: ServingClient; url: string }> {
  const server = await startModelServer({
    modelBasePath: env.home.modelRepositoryDir,
    restPort,
    grpcPort: null,
    pollIntervalMs: 100,
    adminToken: ADMIN_TOKEN,
    stateFile: path.join(env.home.root, stateName),
  });
  const url = `http://127.0.0.1:${server.restPort}`;
  for (const target of [process.env, env.env])
    Object.assign(target, { GANTRY_SERVERS: url, GANTRY_SERVE_ADMIN_TOKEN: ADMIN_TOKEN });
  return { server, client: new ServingClient({ url, adminToken: ADMIN_TOKEN }), url };
}
