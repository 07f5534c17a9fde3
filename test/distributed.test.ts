import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { startRun } from '../cli/runs';
import { PipelineSpecError } from '../pipelines/define';
import { loadModelFromStore } from '../engine/model-files';
import { completedRun, jobStateQuery, trainJobWorkflowId } from '../workflows/api';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { killProcess, spawnWorkerProcess, startInProcessWorkers, waitFor } from './helpers/workers';

/**
 * Synchronous data parallelism end to end: real Temporal server (the job workflow is the
 * rendezvous), real sockets between the replicas (ring all-reduce, or shared memory between them),
 * real Fashion-MNIST slices.
 */
let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;

beforeAll(async () => {
  env = await createTestEnv('distributed');
  // Each train worker has one slot: two of them can run a 2-replica job.
  workers = await startInProcessWorkers(env, ['control', 'train', 'train']);
});
afterAll(async () => {
  await workers?.stop();
});

/** The MLP without dropout, so that runs can match weight for weight. */
const spec = (train: Record<string, unknown>) =>
  sliceSpec({
    data: { limits: { train: 1200, test: 300 } },
    model: { options: { hiddenUnits: [64], dropout: 0 } },
    train: { epochs: 2, optimizer: 'adam', learningRate: 0.003, ...train },
    deployment: { publish: false },
  });

async function trainedWeights(runId: string): Promise<number[]> {
  const store = new FileArtifactStore(env.home.artifactsDir);
  const model = await loadModelFromStore(store, store.uri(`runs/${runId}/model`));
  const weights = model.getWeights().flatMap((w) => Array.from(w.dataSync()));
  model.dispose();
  return weights;
}

const maxAbsDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe('data-parallel training', () => {
  let single: { runId: string; weights: number[]; accuracy: number };

  beforeAll(async () => {
    const handle = await startRun(workers.client, spec({ batchSize: 64 }));
    const result = completedRun(await handle.result());
    single = {
      runId: handle.workflowId,
      weights: await trainedWeights(handle.workflowId),
      accuracy: result.testAccuracy,
    };
    expect(result.train.distribution).toEqual({ strategy: 'mirrored', replicas: 1 });
  });

  // The replicas share a host, so all-reduce goes through shared memory unless it is turned off. Checking the
  // replicas after every step reads the variables, which applies each update on its own; without the check, each
  // update rides on the next step's gradient session run (fused), and only the end result is compared.
  const cases = [
    ['multi-worker-mirrored', 'auto', 'shared-memory', true],
    ['multi-worker-mirrored', 'off', 'tcp', true],
    ['central-storage', 'auto', 'shared-memory', true],
    ['multi-worker-mirrored', 'auto', 'shared-memory', false],
  ] as const;
  for (const [strategy, sharedMemory, allReduce, verifyReplicas] of cases) {
    it(
      `${strategy} (all-reduce over ${allReduce}): 2 replicas × batch 32 reach the weights of ` +
        `1 replica × batch 64 (max |Δ| ≤ 1e-5)${
          verifyReplicas ? ', identical on every replica after every step' : ', updates fused into the next step'
        }`,
      async () => {
        const previous = process.env.GANTRY_SHARED_MEMORY;
        process.env.GANTRY_SHARED_MEMORY = sharedMemory; // read by each trainer as it opens its group
        let result;
        let handle;
        try {
          handle = await startRun(workers.client, spec({ batchSize: 32, replicas: 2, strategy, verifyReplicas }));
          result = completedRun(await handle.result());
        } finally {
          if (previous === undefined) delete process.env.GANTRY_SHARED_MEMORY;
          else process.env.GANTRY_SHARED_MEMORY = previous;
        }
        expect(result.train.distribution).toEqual({ strategy, replicas: 2, allReduce });
        const job = await workers.client.workflow.getHandle(trainJobWorkflowId(handle.workflowId)).query(jobStateQuery);
        expect(job).toMatchObject({ phase: 'completed', worldSize: 2, attempt: 1 });
        expect(job.replicas.map((r) => r.rank).sort()).toEqual([0, 1]);
        expect(maxAbsDiff(await trainedWeights(handle.workflowId), single.weights)).toBeLessThanOrEqual(1e-5);
        // At most one of 300 test images answered differently.
        expect(Math.abs(result.testAccuracy - single.accuracy)).toBeLessThanOrEqual(0.0034);
      },
    );
  }

  it('refuses the tpu strategy and a global batch the data can never fill, naming the field', () => {
    expect(() => spec({ strategy: 'tpu' })).toThrow(PipelineSpecError);
    expect(() => spec({ strategy: 'tpu' })).toThrow(
      /train\.strategy: no TPU runtime exists for TensorFlow\.js.*use mirrored, multi-worker-mirrored, central-storage/,
    );
    expect(() => spec({ replicas: 40, batchSize: 64 })).toThrow(
      /train\.replicas: 40 replicas × batch 64 = 2560 examples per step, more than the 1200 training examples/,
    );
  });

  it('elastic: starts with fewer replicas when no more trainers join in time', async () => {
    const handle = await startRun(
      workers.client,
      spec({
        batchSize: 32,
        replicas: 3,
        elastic: { minReplicas: 2 },
        strategy: 'multi-worker-mirrored',
        rendezvousTimeout: '3s',
        epochs: 1,
      }),
    );
    const result = completedRun(await handle.result());
    expect(result.train.distribution).toEqual({
      strategy: 'multi-worker-mirrored',
      replicas: 2,
      allReduce: 'shared-memory',
    });
    const job = await workers.client.workflow.getHandle(trainJobWorkflowId(handle.workflowId)).query(jobStateQuery);
    expect(job).toMatchObject({ phase: 'completed', replicasWanted: 3, worldSize: 2, attempt: 1 });
  });

  it('fails clearly when more replicas are wanted than trainers ever join', async () => {
    const handle = await startRun(
      workers.client,
      spec({ batchSize: 32, replicas: 3, strategy: 'multi-worker-mirrored', rendezvousTimeout: '3s', maxAttempts: 1 }),
    );
    const error = await handle.result().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error).toBeDefined();
    const message = `${error!.message} ${(error!.cause as Error | undefined)?.message ?? ''}`;
    expect(message).toMatch(/only 2 of 3 trainers joined within 3s; start more train workers/);
  });
});
