/**
 * Training throughput of the fashion-mnist architectures on each TensorFlow.js backend that loads
 * here and on Keras over the same libtensorflow, measured in one run so the rows compare:
 * samples/s and GFLOP/s (forward + backward ≈ 3 × forward multiply-adds × 2), with Keras on the
 * same wheel as the same-run ceiling for the native backend (the graph path's target: ≥ 1.2 × it).
 * Models: the mlp, the default cnn (batch normalisation) and the cnn without it (`cnn-plain`).
 * The plain-JS `cpu` backend takes minutes for one CNN step, so it is measured only with --cpu.
 * For `cnn-plain` it also prints what else the same wheel offers (bench/keras/throughput.py): its step as a bare
 * tf.function of tf.nn ops (the kernels with nothing around them), in NCHW, and Keras's mixed_bfloat16 policy.
 *
 *   npx tsx bench/train-throughput.ts [--steps 60] [--seconds 10] [--batch 128] [--cpu]
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { buildModel } from '../training/architectures';
import { ENGINE_BACKEND_OF, registerWasmBackend, selectBackend, type BackendName } from '../engine/backend';
import { GraphTrainStep } from '../training/graph/graph-step';
import { createOptimizer } from '../training/optimizers';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '60' },
    seconds: { type: 'string', default: '10' },
    batch: { type: 'string', default: '128' },
    cpu: { type: 'boolean', default: false },
  },
});
// At most `steps` timed steps, and no more than `seconds` of them: the plain-JS cpu backend needs
// tens of seconds for one CNN step, and a bench that never finishes measures nothing.
const maxSteps = Number(values.steps);
const budgetSeconds = Number(values.seconds);
const batch = Number(values.batch);

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The rows' models: name (as bench/keras/throughput.py prints it), architecture and its options. */
const MODELS = [
  { model: 'mlp', architecture: 'mlp', options: {} },
  { model: 'cnn', architecture: 'cnn', options: {} },
  { model: 'cnn-plain', architecture: 'cnn', options: { batchNorm: false } },
] as const;
type ModelName = (typeof MODELS)[number]['model'];
const loadAtStart = os.loadavg();
const flopsPerSampleOf: Record<string, number> = {};

/** Multiply-adds of one forward pass of one example, counted from the layer shapes. */
function forwardMacs(model: tf.LayersModel): number {
  let macs = 0;
  for (const layer of model.layers) {
    const config = layer.getConfig();
    const out = layer.outputShape as number[];
    if (layer.getClassName() === 'Dense') macs += (layer.getWeights()[0]!.shape[0] ?? 0) * (config.units as number);
    if (layer.getClassName() === 'Conv2D') {
      const kernel = layer.getWeights()[0]!.shape; // [kh, kw, in, out]
      macs += out[1]! * out[2]! * kernel[0]! * kernel[1]! * kernel[2]! * kernel[3]!;
    }
  }
  return macs;
}

/** `graph`: the whole step as one TensorFlow session run (training/graph/), as the trainer does on tfjs-node. */
async function measure(
  { model: name, architecture, options }: (typeof MODELS)[number],
  graph = false,
): Promise<{ steps: number; samplesPerSecond: number; gflops: number; cpuMsPerStep: number }> {
  const model = buildModel(tf, architecture, { featureShape: [28, 28, 1], numClasses: 10, seed: 1 }, options);
  const optimizer = createOptimizer('adam', 1e-3);
  const xs = tf.randomUniform([batch, 28, 28, 1], 0, 255);
  const ys = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32') as tf.Tensor1D, 10).toFloat();
  const compiled = graph ? await GraphTrainStep.create(model, optimizer, [28, 28, 1], 10) : undefined;
  if (compiled && 'unsupported' in compiled) throw new Error(`no graph step: ${compiled.unsupported}`);
  let stepIndex = 0;
  const step = compiled
    ? () => void compiled.step(xs, ys, 1 / batch, [1, stepIndex++])
    : () => {
        const loss = optimizer.minimize(
          () =>
            tf.mean(
              tf.metrics.categoricalCrossentropy(ys, model.apply(xs, { training: true }) as tf.Tensor),
            ) as tf.Scalar,
          true,
        )!;
        loss.dataSync();
        loss.dispose();
      };
  step(); // warm-up: kernels compiled, memory allocated
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  let steps = 0;
  while (steps < maxSteps && (steps < 2 || performance.now() - started < budgetSeconds * 1000)) {
    step();
    steps++;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const flopsPerSample = 2 * 3 * forwardMacs(model);
  flopsPerSampleOf[name] = flopsPerSample;
  compiled?.dispose();
  tf.dispose([xs, ys]);
  model.dispose();
  optimizer.dispose();
  return {
    steps,
    samplesPerSecond: (steps * batch) / seconds,
    gflops: (steps * batch * flopsPerSample) / seconds / 1e9,
    cpuMsPerStep: (cpu.user + cpu.system) / 1000 / steps,
  };
}

const rows: {
  backend: string;
  model: string;
  steps: number;
  samplesPerSecond: number;
  gflops: number;
  cpuMsPerStep: number;
}[] = [];
// The normal selection first: it loads the best backend (native when built) and says why the others are missing.
const report = await selectBackend();
await registerWasmBackend();
const skipped = report.unavailable.map((u) => `${u.name}: ${u.reason}`);
// The selected (fastest) backend first: the wasm backend's worker threads, once started, stay
// alive in this process and take CPU from whatever is measured after them.
const measured = [...new Set<BackendName>([report.name, 'wasm', ...(values.cpu ? ['cpu' as const] : [])])].filter(
  (b) => !report.unavailable.some((u) => u.name === b),
);
if (!values.cpu) skipped.push('cpu (plain JS): minutes per CNN step; pass --cpu to measure it');
for (const backend of measured) {
  if (!(await tf.setBackend(ENGINE_BACKEND_OF[backend]))) throw new Error(`${backend} did not initialise`);
  const modes = ENGINE_BACKEND_OF[backend] === 'tensorflow' ? [false, true] : [false];
  for (const graph of modes) {
    const label = ENGINE_BACKEND_OF[backend] === 'tensorflow' ? `${backend} (${graph ? 'graph' : 'eager'})` : backend;
    for (const spec of MODELS) {
      const { model } = spec;
      // wasm has no Conv2DBackpropFilter: the CNN cannot train there at all (one row says so).
      if (ENGINE_BACKEND_OF[backend] === 'wasm' && model === 'cnn-plain') continue;
      try {
        rows.push({ backend: label, model, ...(await measure(spec, graph)) });
      } catch (error) {
        skipped.push(`${model} on ${label}: ${(error as Error).message.split('\n')[0]}`);
      }
      console.error(`measured ${model} on ${label}`);
    }
  }
}

// Keras on the same tensorflow-cpu wheel whose libtensorflow the native backend links: the
// ceiling the native backend is measured against (bench/keras/, installed on first use).
interface KerasRow {
  model: ModelName;
  /** null: the model as Keras trains it (the ceiling); else another way the same wheel runs it (printed apart). */
  variant: string | null;
  steps: number;
  samplesPerSecond: number;
  cpuMsPerStep: number;
}
const kerasRows: KerasRow[] = [];
const otherRows: KerasRow[] = [];
try {
  execFileSync('bash', [path.join(HERE, 'keras', 'setup.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const python = path.join(PROJECT_ROOT, '.tools', 'keras-venv', 'bin', 'python');
  const out = execFileSync(
    python,
    [path.join(HERE, 'keras', 'throughput.py'), String(batch), String(maxSteps), String(budgetSeconds)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  for (const line of out.trim().split('\n')) {
    const row = JSON.parse(line) as KerasRow;
    (row.variant === null ? kerasRows : otherRows).push(row);
  }
  const tfVersion = execFileSync(python, ['-c', 'import tensorflow as tf; print(tf.__version__)'], {
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
  }).trim();
  for (const r of kerasRows) {
    const macs = flopsPerSampleOf[r.model]!;
    rows.push({
      backend: `keras (tensorflow ${tfVersion})`,
      model: r.model,
      steps: r.steps,
      samplesPerSecond: r.samplesPerSecond,
      cpuMsPerStep: r.cpuMsPerStep,
      gflops: (r.samplesPerSecond * macs) / 1e9,
    });
  }
} catch (error) {
  skipped.push(`keras: ${(error as Error).message.split('\n')[0]}`);
}

// The same-run ceiling: Keras on the same wheel, per model.
const ceiling = (model: string) => kerasRows.find((r) => r.model === model)?.samplesPerSecond;
const load = (l: number[]) => l.map((v) => v.toFixed(2)).join(' ');
console.log(
  `train throughput, batch ${batch}, up to ${maxSteps} timed steps or ${budgetSeconds} s after one warm-up step, ` +
    `tfjs ${tf.version.tfjs}, ${os.availableParallelism()} CPUs, load average ${load(loadAtStart)} at the start ` +
    `and ${load(os.loadavg())} at the end\n`,
);
// CPU time per step (every thread of the process): on a machine others load too, the steadier of the two measures.
console.log('| backend | model | steps | samples/s | GFLOP/s | CPU ms/step | × keras (same run) |');
console.log('|---|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const keras = ceiling(r.model);
  console.log(
    `| ${r.backend} | ${r.model} | ${r.steps} | ${r.samplesPerSecond.toFixed(0)} | ${r.gflops.toFixed(2)} | ` +
      `${r.cpuMsPerStep.toFixed(1)} | ` +
      `${keras ? (r.samplesPerSecond / keras).toFixed(2) : '-'} |`,
  );
}
const graphRows = rows.filter((r) => r.backend.endsWith('(graph)'));
if (graphRows.length && kerasRows.length) {
  console.log(
    '\n| model | graph path samples/s | keras samples/s (ceiling) | graph / keras (target ≥ 1.2) | ' +
      'keras / graph CPU time per step |',
  );
  console.log('|---|---:|---:|---:|---:|');
  for (const n of graphRows) {
    const keras = kerasRows.find((r) => r.model === n.model);
    if (keras)
      console.log(
        `| ${n.model} | ${n.samplesPerSecond.toFixed(0)} | ${keras.samplesPerSecond.toFixed(0)} | ` +
          `${(n.samplesPerSecond / keras.samplesPerSecond).toFixed(2)} | ` +
          `${(keras.cpuMsPerStep / n.cpuMsPerStep).toFixed(2)} |`,
      );
  }
}
const plain = rows.find((r) => r.backend.endsWith('(graph)') && r.model === 'cnn-plain');
const kerasPlain = kerasRows.find((r) => r.model === 'cnn-plain');
if (otherRows.length && plain && kerasPlain) {
  // Where the plain CNN's time goes: the same kernels with nothing around them, and the other options the wheel has.
  console.log('\ncnn-plain on the same wheel, other ways (same run):');
  console.log('| how | samples/s | CPU ms/step | ÷ Keras | graph path ÷ it |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of [{ ...kerasPlain, variant: 'Keras (the ceiling)' }, ...otherRows])
    console.log(
      `| ${r.variant} | ${r.samplesPerSecond.toFixed(0)} | ${r.cpuMsPerStep.toFixed(1)} | ` +
        `${(r.samplesPerSecond / kerasPlain.samplesPerSecond).toFixed(2)} | ` +
        `${(plain.samplesPerSecond / r.samplesPerSecond).toFixed(2)} |`,
    );
}
if (skipped.length) console.log(`\nnot measured:\n${skipped.map((s) => `  ${s}`).join('\n')}`);
