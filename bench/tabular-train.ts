/**
 * Training throughput of the `tabular` architecture on penguins- and cars-shaped encoded records
 * (a 3-class classifier on 11 inputs, a regression on 10), and of a penguins model with several inputs (the
 * numeric columns through a Dense layer, Island and Sex each through an Embedding, joined by Concatenate: the
 * architecture of test/multi-input.test.ts), on tfjs-node eager, tfjs-node as one
 * graph per step (training/graph/), the plain-JS `cpu` backend (same-run baseline) and Keras on the
 * same tensorflow-cpu wheel (bench/keras/tabular.py), measured in one run so the rows compare.
 *
 *   npx tsx bench/tabular-train.ts [--steps 300] [--seconds 5] [--batch 128]
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { selectBackend } from '../engine/backend';
import { buildModel } from '../training/architectures';
import { GraphTrainStep } from '../training/graph/graph-step';
import { createOptimizer } from '../training/optimizers';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '5' },
    batch: { type: 'string', default: '128' },
  },
});
const maxSteps = Number(values.steps);
const budgetSeconds = Number(values.seconds);
const batch = Number(values.batch);
const HERE = path.dirname(fileURLToPath(import.meta.url));

interface Case {
  name: string;
  featureSize: number;
  task: 'classification' | 'regression';
  numClasses: number;
  hiddenUnits: number[];
  dropout: number;
  batchNorm: boolean;
  /**
   * A model with several inputs instead of the `tabular` architecture: `numeric` columns → Dense(hidden, relu), one
   * index input per vocabulary size → Embedding(size, embedding) → Flatten, Concatenate → softmax.
   */
  inputs?: { numeric: number; vocabularies: number[]; embedding: number; hidden: number };
}

// The widths data/preprocessing.ts gives penguins (4 numbers, island 3 + 1, sex 2 + 1) and cars (6 numbers,
// origin 3 + 1).
const CASES: Case[] = [
  {
    name: 'penguins',
    featureSize: 11,
    task: 'classification',
    numClasses: 3,
    hiddenUnits: [64, 32],
    dropout: 0.1,
    batchNorm: false,
  },
  {
    name: 'penguins+bn',
    featureSize: 11,
    task: 'classification',
    numClasses: 3,
    hiddenUnits: [64, 32],
    dropout: 0.1,
    batchNorm: true,
  },
  {
    name: 'cars',
    featureSize: 10,
    task: 'regression',
    numClasses: 1,
    hiddenUnits: [64, 32],
    dropout: 0.1,
    batchNorm: false,
  },
  {
    name: 'cars+bn',
    featureSize: 10,
    task: 'regression',
    numClasses: 1,
    hiddenUnits: [64, 32],
    dropout: 0.1,
    batchNorm: true,
  },
  {
    // Penguins' 4 numbers; Island 3 + 1 and Sex 2 + 1 categories, as tabularInputs gives them.
    name: 'penguins-embedded',
    featureSize: 11,
    task: 'classification',
    numClasses: 3,
    hiddenUnits: [],
    dropout: 0,
    batchNorm: false,
    inputs: { numeric: 4, vocabularies: [4, 3], embedding: 2, hidden: 16 },
  },
];

/** The model of a case with several inputs, and a random batch of its inputs (indices within each vocabulary). */
function multiInput(c: Case, spec: NonNullable<Case['inputs']>): { model: tf.LayersModel; xs: tf.Tensor[] } {
  const numeric = tf.input({ shape: [spec.numeric], name: 'numeric' });
  const indices = spec.vocabularies.map((_, i) => tf.input({ shape: [1], name: `category${i}` }));
  const dense = tf.layers.dense({ units: spec.hidden, activation: 'relu' }).apply(numeric) as tf.SymbolicTensor;
  const embedded = indices.map(
    (input, i) =>
      tf.layers
        .flatten()
        .apply(
          tf.layers.embedding({ inputDim: spec.vocabularies[i]!, outputDim: spec.embedding }).apply(input),
        ) as tf.SymbolicTensor,
  );
  const joined = tf.layers.concatenate().apply([dense, ...embedded]) as tf.SymbolicTensor;
  const output = tf.layers.dense({ units: c.numClasses, activation: 'softmax' }).apply(joined) as tf.SymbolicTensor;
  const model = tf.model({ inputs: [numeric, ...indices], outputs: output });
  const xs = [
    tf.randomNormal([batch, spec.numeric]),
    ...spec.vocabularies.map((size) => tf.randomUniform([batch, 1], 0, size, 'int32').toFloat()),
  ];
  return { model, xs };
}

async function measure(c: Case, graph: boolean): Promise<{ steps: number; samplesPerSecond: number; mode: string }> {
  const featureShape = [c.featureSize];
  const { hiddenUnits, dropout, batchNorm } = c;
  const input = { featureShape, task: c.task, numClasses: c.numClasses, seed: 1 };
  const { model, xs } = c.inputs
    ? multiInput(c, c.inputs)
    : {
        model: buildModel(tf, 'tabular', input, { hiddenUnits, dropout, batchNorm }),
        xs: tf.randomNormal([batch, c.featureSize]),
      };
  const optimizer = createOptimizer('adam', 1e-3);
  const ys =
    c.task === 'regression'
      ? tf.randomNormal([batch, 1], 20, 5)
      : tf.oneHot(tf.randomUniform([batch], 0, c.numClasses, 'int32') as tf.Tensor1D, c.numClasses).toFloat();
  const compiled = graph
    ? await GraphTrainStep.create(model, optimizer, featureShape, c.numClasses, c.task)
    : undefined;
  if (compiled && 'unsupported' in compiled) throw new Error(`no graph step: ${compiled.unsupported}`);
  let stepIndex = 0;
  const loss = (output: tf.Tensor) =>
    c.task === 'regression'
      ? tf.mean(tf.squaredDifference(output, ys))
      : tf.mean(tf.metrics.categoricalCrossentropy(ys, output));
  const step = compiled
    ? () => void compiled.step(xs, ys, 1 / batch, [1, stepIndex++])
    : () => {
        const value = optimizer.minimize(
          () => loss(model.apply(xs, { training: true }) as tf.Tensor) as tf.Scalar,
          true,
        )!;
        value.dataSync();
        value.dispose();
      };
  step();
  const started = performance.now();
  let steps = 0;
  while (steps < maxSteps && (steps < 2 || performance.now() - started < budgetSeconds * 1000)) {
    step();
    steps++;
  }
  const seconds = (performance.now() - started) / 1000;
  compiled?.dispose();
  tf.dispose([...(Array.isArray(xs) ? xs : [xs]), ys]);
  model.dispose();
  optimizer.dispose();
  return { steps, samplesPerSecond: (steps * batch) / seconds, mode: graph ? 'graph' : 'eager' };
}

const rows: { backend: string; name: string; steps: number; samplesPerSecond: number }[] = [];
const skipped: string[] = [];
const report = await selectBackend();
const native = report.engineBackend === 'tensorflow';
for (const backend of [...new Set([report.engineBackend, 'cpu'])]) {
  if (!(await tf.setBackend(backend))) throw new Error(`${backend} did not initialise`);
  const modes = backend === 'tensorflow' ? [false, true] : [false];
  for (const graph of modes) {
    const label = backend === 'tensorflow' ? `tfjs-node (${graph ? 'graph' : 'eager'})` : backend;
    for (const c of CASES) {
      try {
        rows.push({ backend: label, name: c.name, ...(await measure(c, graph)) });
      } catch (error) {
        skipped.push(`${c.name} on ${label}: ${(error as Error).message}`);
      }
      console.error(`measured ${c.name} on ${label}`);
    }
  }
}
if (!native) skipped.push(`tfjs-node: ${report.unavailable.map((u) => `${u.name}: ${u.reason}`).join('; ')}`);

const kerasRows: { name: string; steps: number; samplesPerSecond: number }[] = [];
try {
  execFileSync('bash', [path.join(HERE, 'keras', 'setup.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const python = path.join(PROJECT_ROOT, '.tools', 'keras-venv', 'bin', 'python');
  const out = execFileSync(
    python,
    [
      path.join(HERE, 'keras', 'tabular.py'),
      JSON.stringify(CASES),
      String(batch),
      String(maxSteps),
      String(budgetSeconds),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  for (const line of out.trim().split('\n')) kerasRows.push(JSON.parse(line));
  for (const r of kerasRows) rows.push({ backend: 'keras', ...r });
} catch (error) {
  skipped.push(`keras: ${(error as Error).message.split('\n')[0]}`);
}

console.log(
  `tabular training throughput, batch ${batch}, up to ${maxSteps} timed steps or ${budgetSeconds} s after one ` +
    `warm-up step, tfjs ${tf.version.tfjs}\n`,
);
console.log('| backend | model | steps | samples/s | × keras (same run) |');
console.log('|---|---|---:|---:|---:|');
for (const r of rows) {
  const keras = kerasRows.find((k) => k.name === r.name)?.samplesPerSecond;
  console.log(
    `| ${r.backend} | ${r.name} | ${r.steps} | ${r.samplesPerSecond.toFixed(0)} | ` +
      `${keras ? (r.samplesPerSecond / keras).toFixed(2) : '-'} |`,
  );
}
if (skipped.length) console.log(`\nnot measured:\n${skipped.map((s) => `  ${s}`).join('\n')}`);
