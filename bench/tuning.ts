/**
 * Hyperparameter search on a Fashion-MNIST slice with the same space and the same budget of epochs:
 * Gantry's tuner (workflows/tuning/) as ASHA and as random search, each trial an MLP trained in this process on the
 * TensorFlow.js backend the trainers use, and Optuna (random sampling + its SuccessiveHalvingPruner, the same
 * ASHA) driving Keras on the same tensorflow-cpu wheel as the peer. Trials run one at a time so the rows compare.
 * Per row: trials, epochs trained, the best validation accuracy reached, and the epochs and seconds it took to
 * come within 0.5 point of that row's final best. Not in CI; about 3-4 minutes with the defaults on 2 cores.
 *
 *   npx tsx bench/tuning.ts [--train 3000] [--validation 1000] [--epochs 9] [--budget 30] [--seed 1] [--no-optuna]
 *
 * The Optuna row needs `optuna` in .tools/keras-venv: its setup (bench/keras/setup.sh, then pip) runs here.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { readIdxFile, resolveIdxFile } from '../data/idx';
import { selectBackend, tf } from '../engine/backend';
import { TuningSpecSchema } from '../pipelines/spec';
import { buildModel } from '../training/architectures';
import { createOptimizer } from '../training/optimizers';
import { createTuner, nextAction, reportTrial, tunerConfig } from '../workflows/tuning/tuner';

const { values } = parseArgs({
  options: {
    train: { type: 'string', default: '3000' },
    validation: { type: 'string', default: '1000' },
    epochs: { type: 'string', default: '9' },
    budget: { type: 'string', default: '30' },
    seed: { type: 'string', default: '1' },
    'no-optuna': { type: 'boolean', default: false },
  },
});
const nTrain = Number(values.train);
const nValidation = Number(values.validation);
const maxEpochs = Number(values.epochs);
const budget = Number(values.budget);
const seed = Number(values.seed);
const DATA = '/usr/share/datasets/fashion-mnist';
const SPACE = {
  lr: [1e-4, 3e-2] as [number, number],
  dropout: [0, 0.5] as [number, number],
  hidden: [[64], [128], [256, 128]],
  batch: [32, 64, 128],
};

/** One epoch trained: when (seconds since the row began), which trial, which epoch, its validation accuracy. */
type EpochLog = [seconds: number, trial: number, epoch: number, accuracy: number];
interface Row {
  method: string;
  trials: number;
  epochs: EpochLog[];
}

const report = await selectBackend();
const [images, labels] = await Promise.all([
  readIdxFile(await resolveIdxFile(DATA, 'train-images-idx3-ubyte'), 'images'),
  readIdxFile(await resolveIdxFile(DATA, 'train-labels-idx1-ubyte'), 'labels'),
]);
const total = nTrain + nValidation;
if (total > images.dims[0]!)
  throw new Error(`--train + --validation: ${total} is more than the ${images.dims[0]} images`);
const pixels = images.data.subarray(0, total * 784);
const classes = labels.data.subarray(0, total);
const xs = tf.tensor4d(Float32Array.from(pixels), [total, 28, 28, 1]);
const ys = tf.oneHot(tf.tensor1d(Int32Array.from(classes), 'int32'), 10).toFloat();
const [xTrain, xVal] = tf.split(xs, [nTrain, nValidation]) as [tf.Tensor, tf.Tensor];
const [yTrain, yVal] = tf.split(ys, [nTrain, nValidation]) as [tf.Tensor, tf.Tensor];

/** Gantry's tuner picks the trials; each trains here with tfjs `fit`, resuming its in-memory model on promotion. */
async function gantryRow(algorithm: 'asha' | 'random'): Promise<Row> {
  const tuning = TuningSpecSchema.parse({
    space: {
      'train.learningRate': { logUniform: SPACE.lr },
      'model.options.dropout': { uniform: SPACE.dropout },
      'model.options.hiddenUnits': { choice: SPACE.hidden },
      'train.batchSize': { choice: SPACE.batch },
    },
    budget: { trials: 1000, epochs: budget },
    parallelism: 1,
    algorithm,
    asha: { minEpochs: 1, reductionFactor: 3 },
    seed,
  });
  const config = tunerConfig(tuning, maxEpochs);
  const state = createTuner(seed);
  const models = new Map<number, tf.LayersModel>();
  const epochs: EpochLog[] = [];
  const started = performance.now();
  for (let action = nextAction(config, state); action; action = nextAction(config, state)) {
    const { trial } = action;
    const p = trial.params;
    let model = models.get(trial.trial);
    if (!model) {
      model = buildModel(
        tf,
        'mlp',
        { featureShape: [28, 28, 1], numClasses: 10, seed: trial.trial },
        { hiddenUnits: p['model.options.hiddenUnits'], dropout: p['model.options.dropout'] },
      );
      model.compile({
        optimizer: createOptimizer('adam', p['train.learningRate'] as number),
        loss: 'categoricalCrossentropy',
        metrics: ['accuracy'],
      });
      models.set(trial.trial, model);
    }
    const history = await model.fit(xTrain, yTrain, {
      batchSize: p['train.batchSize'] as number,
      epochs: trial.target,
      initialEpoch: trial.epochs,
      validationData: [xVal, yVal],
      shuffle: true,
      verbose: 0,
      callbacks: {
        onEpochEnd: async (epoch, logs) => {
          epochs.push([(performance.now() - started) / 1000, trial.trial, epoch + 1, logs!.val_acc as number]);
        },
      },
    });
    const reached = (history.history.val_acc as number[]).map(Number);
    reportTrial(config, state, trial.trial, [...trial.values, ...reached]);
    if (trial.state !== 'waiting') {
      model.dispose();
      models.delete(trial.trial);
    }
  }
  for (const model of models.values()) model.dispose();
  const name = algorithm === 'asha' ? 'ASHA (η=3)' : 'random';
  return { method: `Gantry ${name}, tfjs ${report.name}`, trials: state.trials.length, epochs };
}

/** Optuna + Keras in .tools/keras-venv on the same slice (written out as raw bytes for it). */
function optunaRow(dir: string): Row | string {
  const python = path.join(PROJECT_ROOT, '.tools', 'keras-venv', 'bin', 'python');
  try {
    execFileSync('bash', [path.join(PROJECT_ROOT, 'bench', 'keras', 'setup.sh')], { stdio: 'inherit' });
    try {
      execFileSync(python, ['-c', 'import optuna'], { stdio: 'ignore' });
    } catch {
      console.error('[tuning-bench] installing optuna into .tools/keras-venv');
      execFileSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', 'optuna'], {
        stdio: 'inherit',
      });
    }
    const args = { dir, train: nTrain, validation: nValidation, epochs: maxEpochs, budget, seed, space: SPACE };
    const out = execFileSync(python, [path.join(PROJECT_ROOT, 'bench', 'keras', 'tuning.py'), JSON.stringify(args)], {
      encoding: 'utf8',
      maxBuffer: 16 << 20,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { epochs: EpochLog[]; trials: number; optuna: string };
    return { method: `Optuna ${result.optuna} ASHA (η=3) + Keras`, trials: result.trials, epochs: result.epochs };
  } catch (error) {
    return `Optuna row skipped: ${(error as Error).message.split('\n')[0]}`;
  }
}

function summary(row: Row): string[] {
  const accuracies = row.epochs.map((e) => e[3]);
  const best = Math.max(...accuracies);
  const near = row.epochs.findIndex((e) => e[3] >= best - 0.005);
  return [
    row.method,
    String(row.trials),
    String(row.epochs.length),
    (best * 100).toFixed(2),
    String(near + 1),
    row.epochs[near]![0].toFixed(1),
    row.epochs.at(-1)![0].toFixed(1),
  ];
}

const rows: (Row | string)[] = [];
console.error(
  `[tuning-bench] ${nTrain} train / ${nValidation} validation images, ` +
    `${maxEpochs} epochs a trial at most, ${budget} epochs a row`,
);
rows.push(await gantryRow('asha'));
rows.push(await gantryRow('random'));
if (!values['no-optuna']) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-tuning-bench-'));
  try {
    await writeFile(path.join(dir, 'images.u8'), pixels);
    await writeFile(path.join(dir, 'labels.u8'), classes);
    rows.push(optunaRow(dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const header = ['method', 'trials', 'epochs', 'best val acc %', 'epochs to ≤0.5 pt', 's to ≤0.5 pt', 'total s'];
const table = [header, ...rows.filter((r): r is Row => typeof r !== 'string').map(summary)];
const widths = header.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
for (const r of table)
  console.log(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
for (const r of rows) if (typeof r === 'string') console.log(r);
