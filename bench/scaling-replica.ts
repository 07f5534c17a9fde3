/**
 * One replica process of bench/scaling.ts: trains the fashion-mnist MLP for a fixed number of
 * global batches with replicaLoop over a real CollectiveGroup, then prints its samples/s.
 * Protocol: prints {"port"} on stdout, reads {"rank","peers"} on stdin, prints {"samplesPerSecond"}.
 */
import { createInterface } from 'node:readline';
import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../data/sources';
import { buildModel } from '../training/architectures';
import { selectBackend, tf } from '../training/backend';
import { CollectiveGroup } from '../training/collectives';
import { createReplicaEngine } from '../training/distributed/replica-engine';
import { replicaLoop } from '../training/distributed/replica-loop';
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

const group = await CollectiveGroup.listen({ jobId: 'bench-scaling', attempt: 1 });
console.log(JSON.stringify({ port: group.address.port }));
const line = await new Promise<string>((resolve) => createInterface({ input: process.stdin }).once('line', resolve));
const { rank, peers } = JSON.parse(line) as { rank: number; peers: { rank: number; host: string; port: number }[] };
await group.connect({ rank, peers });

let timedFrom = 0;
let timedSteps = 0;
await replicaLoop({
  engine, collective: group, strategy: 'multi-worker-mirrored', model, optimizer, train, validation, featureShape: [28, 28, 1], numClasses: 10,
  epochs: 1, batchSize, seed: 1, start: { epoch: 0, stepInEpoch: 0, globalStep: 0 }, learningRateAt: () => 0.001,
  onStep: (p) => {
    // The first `warmup` steps compile kernels and fill caches; time the rest.
    if (p.step === warmup) timedFrom = performance.now();
    if (p.step > warmup) timedSteps++;
  },
});
const seconds = (performance.now() - timedFrom) / 1000;
console.log(JSON.stringify({ samplesPerSecond: (timedSteps * batchSize * worldSize) / seconds, backend: backend.name, execution: execution.mode }));
await group.close();
engine.dispose();
process.exit(0);
