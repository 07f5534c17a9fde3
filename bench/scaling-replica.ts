/**
 * One replica process of bench/scaling.ts: trains the fashion-mnist MLP for a fixed number of
 * global batches with replicaLoop over a real CollectiveGroup, then prints its samples/s.
 * Protocol: prints {"port"} on stdout, reads {"rank","peers"} on stdin, prints {"samplesPerSecond"}.
 */
import { createInterface } from 'node:readline';
import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../data/sources';
import { buildModel } from '../training/architectures';
import { selectBackend, tf } from '../engine/backend';
import { CollectiveGroup, collectiveKey, deriveAttemptSecret } from '../collectives';
import { createReplicaEngine } from '../training/replica-engine';
import { strategyRing, type Collective } from '../training/distributed/strategies';
import { replicaLoop } from '../training/loop';
import { createOptimizer } from '../training/optimizers';

const [worldSize, batchSize, steps, warmup] = process.argv.slice(2).map(Number) as [number, number, number, number];
const backend = await selectBackend();
const raw = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
const count = (steps + warmup) * batchSize * worldSize;
const size = 28 * 28;
const train = { images: raw.train.images.slice(0, count * size), labels: raw.train.labels.slice(0, count), count };
const validation = { images: raw.test.images.slice(0, 10 * size), labels: raw.test.labels.slice(0, 10), count: 10 };
const model = buildModel(tf, 'mlp', { featureShape: [28, 28, 1], numClasses: 10, seed: 1 }, {});
const optimizer = createOptimizer('adam', 0.001);
const { engine, execution } = await createReplicaEngine(model, optimizer, [28, 28, 1], 10);

const group = await CollectiveGroup.listen({
  jobId: 'bench-scaling',
  attempt: 1,
  secret: deriveAttemptSecret(collectiveKey(), 'bench-scaling', 1),
});
console.log(JSON.stringify({ port: group.address.port }));
const line = await new Promise<string>((resolve) => createInterface({ input: process.stdin }).once('line', resolve));
const { rank, peers } = JSON.parse(line) as { rank: number; peers: { rank: number; host: string; port: number }[] };
await group.connect({ rank, peers });

// Where a step's time goes (timed steps only): the gradient session run, the all-reduce (waiting
// for the peer included, unless BENCH_SPLIT_WAIT puts a barrier before it, which then takes the
// wait), the update session run; the rest is the loop's own work.
const phases = { compute: 0, allReduce: 0, apply: 0, wait: 0 };
let timing = false;
const timed =
  <A extends unknown[], R>(phase: keyof typeof phases, fn: (...args: A) => R) =>
  (...args: A): R => {
    const t0 = performance.now();
    const result = fn(...args);
    if (result instanceof Promise)
      return result.finally(() => timing && (phases[phase] += performance.now() - t0)) as R;
    if (timing) phases[phase] += performance.now() - t0;
    return result;
  };
// BENCH_FUSE=0 applies each update in its own session run; otherwise (where the engine can) it rides on the next
// gradient run, which the 'compute' phase then includes.
const fuseUpdates = process.env.BENCH_FUSE !== '0';
const profiledEngine = Object.assign(Object.create(engine), {
  computeGradients: timed('compute', engine.computeGradients.bind(engine)),
  applyGradients: timed('apply', engine.applyGradients.bind(engine)),
  deferGradients: engine.deferGradients && timed('apply', engine.deferGradients.bind(engine)),
  // Every other method bound to the engine itself, whose state (a deferred update) they read.
  readVariables: engine.readVariables.bind(engine),
  writeVariables: engine.writeVariables.bind(engine),
  syncToModel: engine.syncToModel.bind(engine),
  step: engine.step.bind(engine),
});
const barrierFirst = process.env.BENCH_SPLIT_WAIT === '1';
const timedBarrier = timed('wait', group.barrier.bind(group));
const timedAllReduce = timed('allReduce', group.allReduce.bind(group));
// Every method bound to the group itself: its operation counter must see every operation.
const profiledGroup: Collective = {
  rank: group.rank,
  worldSize: group.worldSize,
  broadcast: group.broadcast.bind(group),
  reduce: group.reduce.bind(group),
  allReduce: async (data: Float32Array, options?: { op?: 'sum' | 'mean' }) => {
    if (barrierFirst) await timedBarrier();
    return timedAllReduce(data, options);
  },
};

let timedFrom = 0;
let timedSteps = 0;
await replicaLoop({
  engine: profiledEngine,
  ring: strategyRing('multi-worker-mirrored', profiledGroup, { fuseUpdates }),
  model,
  optimizer,
  train,
  validation,
  featureShape: [28, 28, 1],
  numClasses: 10,
  epochs: 1,
  batchSize,
  seed: 1,
  start: { epoch: 0, stepInEpoch: 0, globalStep: 0 },
  learningRateAt: () => 0.001,
  onStep: (p) => {
    // The first `warmup` steps compile kernels and fill caches; time the rest.
    if (p.step === warmup) {
      timedFrom = performance.now();
      timing = true;
    }
    if (p.step > warmup) timedSteps++;
  },
});
const seconds = (performance.now() - timedFrom) / 1000;
const perStep = (ms: number) => Number((ms / timedSteps).toFixed(3));
console.log(
  JSON.stringify({
    samplesPerSecond: (timedSteps * batchSize * worldSize) / seconds,
    backend: backend.name,
    execution: execution.mode,
    fused: fuseUpdates && 'fusesUpdates' in engine && engine.fusesUpdates === true,
    transport: group.transport.allReduce + (group.transport.reason ? ` (${group.transport.reason})` : ''),
    msPerStep: {
      total: perStep(seconds * 1000),
      compute: perStep(phases.compute),
      allReduce: perStep(phases.allReduce),
      apply: perStep(phases.apply),
      wait: perStep(phases.wait),
    },
  }),
);
await group.close();
engine.dispose();
process.exit(0);
