import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import { installNativeKernels } from './native-kernels';

/**
 * Backend selection: the fastest TensorFlow.js backend this process can load, in the order
 * tfjs-node-gpu → tfjs-node → wasm → cpu, or the one GANTRY_BACKEND names. The native packages
 * are optional (their install downloads libtensorflow, which fails on a closed network), so each
 * miss is recorded with its reason and the choice is reported with every run.
 */

export const BACKEND_NAMES = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** The id each backend registers with the tfjs engine (`tf.setBackend` / `tf.getBackend`). */
export const ENGINE_BACKEND_OF: Record<BackendName, string> = {
  'tfjs-node-gpu': 'tensorflow',
  'tfjs-node': 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

export const BackendReportSchema = z.object({
  name: z.enum(BACKEND_NAMES),
  /** Why training left the selected backend for a slower one (a kernel it lacks), if it did. */
  fallbackReason: z.string().optional(),
  /** The tfjs engine's own backend id (`tensorflow`, `wasm`, `cpu`). */
  engineBackend: z.string(),
  tfjsVersion: z.string(),
  threads: z.number().int().optional(),
  unavailable: z.array(z.object({ name: z.enum(BACKEND_NAMES), reason: z.string() })),
});
export type BackendReport = z.infer<typeof BackendReportSchema>;

const require = createRequire(import.meta.url);

async function tryNative(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<void> {
  try {
    require.resolve(pkg);
  } catch {
    throw new Error(
      `${pkg} is not installed (optional: its install script downloads libtensorflow, which this network refuses)`,
    );
  }
  // libtensorflow logs its start-up at INFO to stderr; Gantry reports the backend itself.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  // Graph sessions (the trainer's step, the model server's forward pass) run their ops in the
  // calling thread. By default TensorFlow hands each op to its inter-op pool and the caller
  // waits; Node calls from its one JS thread, so that buys no parallelism, only a thread
  // hand-off per op: the fashion-mnist MLP's forward pass took 132 µs at batch 1 that way and
  // 43 µs in the caller's thread (99 vs 181 µs at batch 16). Kernels still use the intra-op
  // pool. A negative TF_NUM_INTEROP_THREADS is TensorFlow's own switch for this (read once,
  // when the first session starts); an operator's own setting wins.
  process.env.TF_NUM_INTEROP_THREADS ??= '-1';
  try {
    await import(pkg);
  } catch (error) {
    const first = (error as Error).message.split('\n')[0];
    throw new Error(
      `${pkg} is installed but does not load: ${first} (rebuild it with \`bash scripts/setup-native.sh\`)`,
    );
  }
  if (!(await tf.setBackend('tensorflow')))
    throw new Error(`${pkg} loaded but the "tensorflow" backend did not initialise`);
  installNativeKernels();
}

/**
 * Registers the wasm backend without switching to it (benchmarks and the native-vs-wasm test
 * compare the two in one process). In Node the .wasm binaries are read from the package folder.
 */
export async function registerWasmBackend(): Promise<typeof import('@tensorflow/tfjs-backend-wasm')> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(
    path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep,
  );
  return wasm;
}

async function tryWasm(): Promise<number> {
  const wasm = await registerWasmBackend();
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
  return wasm.getThreadsCount();
}

async function activate(name: BackendName): Promise<number | undefined> {
  switch (name) {
    case 'tfjs-node-gpu':
      await tryNative('@tensorflow/tfjs-node-gpu');
      return undefined;
    case 'tfjs-node':
      await tryNative('@tensorflow/tfjs-node');
      return undefined;
    case 'wasm':
      return tryWasm();
    case 'cpu':
      if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
      return undefined;
  }
}

let selected: Promise<BackendReport> | undefined;

/** Picks and activates the backend once per process; later calls return the same report. */
export function selectBackend(env: NodeJS.ProcessEnv = process.env): Promise<BackendReport> {
  selected ??= select(env);
  return selected;
}

async function select(env: NodeJS.ProcessEnv): Promise<BackendReport> {
  // Production mode: no debug checks, and no console advice to install tfjs-node — Gantry
  // reports the backend it chose (and why not a faster one) itself.
  tf.enableProdMode();
  const requested = env.GANTRY_BACKEND;
  if (requested !== undefined && !(BACKEND_NAMES as readonly string[]).includes(requested)) {
    throw new Error(`GANTRY_BACKEND: "${requested}" is not a backend; choose one of ${BACKEND_NAMES.join(', ')}`);
  }
  const candidates: readonly BackendName[] = requested ? [requested as BackendName] : BACKEND_NAMES;
  const unavailable: BackendReport['unavailable'] = [];
  for (const name of candidates) {
    try {
      const threads = await activate(name);
      await tf.ready();
      return { name, engineBackend: tf.getBackend(), tfjsVersion: tf.version.tfjs, threads, unavailable };
    } catch (error) {
      unavailable.push({ name, reason: (error as Error).message.split('\n')[0]! });
    }
  }
  throw new Error(
    `no TensorFlow.js backend could be loaded: ${unavailable.map((u) => `${u.name}: ${u.reason}`).join('; ')}`,
  );
}

/**
 * The backend this process computes on right now: the selected one, unless a training in this
 * process fell back to `cpu` (see selectTrainingBackend), which then stays active.
 */
export async function activeBackend(): Promise<BackendReport> {
  const selected = await selectBackend();
  if (tf.getBackend() === selected.engineBackend) return selected;
  return {
    ...selected,
    name: 'cpu',
    engineBackend: tf.getBackend(),
    threads: undefined,
    fallbackReason: 'a training in this process needed a kernel only cpu has',
  };
}

/**
 * The backend to train `build()`'s architecture on: the selected one when it has every kernel
 * the training step needs (forward and gradients), else `cpu`, which has them all. The wasm
 * backend, for one, has no Conv2DBackpropFilter, so a CNN cannot train there. Probes with a
 * two-example batch and applies nothing.
 */
export async function selectTrainingBackend(
  build: () => tfType.LayersModel,
  featureShape: number[],
  /**
   * What the architecture's kernels depend on (architecture, options, shapes): a key probed before in this process
   * is answered from memory, sparing each small run of a long-lived trainer a model build and a gradient step.
   */
  key?: string,
): Promise<BackendReport> {
  const selected = await selectBackend();
  const cacheKey = key === undefined ? undefined : `${selected.name}\n${key}`;
  const known = cacheKey === undefined ? undefined : probedBackends.get(cacheKey);
  if (known) {
    if (tf.getBackend() !== known.engineBackend) await tf.setBackend(known.engineBackend);
    return known;
  }
  const report = await probeTrainingBackend(selected, build, featureShape);
  if (cacheKey !== undefined) probedBackends.set(cacheKey, report);
  return report;
}

const probedBackends = new Map<string, BackendReport>();

async function probeTrainingBackend(
  selected: BackendReport,
  build: () => tfType.LayersModel,
  featureShape: number[],
): Promise<BackendReport> {
  // The loss is a plain mean square of the output: what is probed is the model's own kernels and
  // their gradients, which do not depend on the task's loss (a regression has no classes to one-hot).
  const probe = () => {
    const model = build();
    try {
      tf.tidy(() => {
        // A model with several inputs gets zeros of each (index 0 is a valid category for an Embedding).
        const xs =
          model.inputs.length > 1
            ? model.inputs.map((t) => tf.zeros([2, ...t.shape.slice(1).map((d) => d ?? 1)]))
            : tf.zeros([2, ...featureShape]);
        const variables = model.trainableWeights.map((w) => w.read() as tfType.Variable);
        const { value, grads } = tf.variableGrads(
          () => tf.mean(tf.square(model.apply(xs, { training: true }) as tfType.Tensor)) as tfType.Scalar,
          variables,
        );
        tf.dispose([value, ...Object.values(grads)]);
      });
    } finally {
      model.dispose();
    }
  };
  if (tf.getBackend() !== selected.engineBackend) await tf.setBackend(selected.engineBackend);
  try {
    probe();
    return selected;
  } catch (error) {
    const message = (error as Error).message;
    if (!/not registered for backend/.test(message) || selected.name === 'cpu') throw error;
    await tf.setBackend('cpu');
    probe();
    return {
      ...selected,
      name: 'cpu',
      engineBackend: 'cpu',
      threads: undefined,
      fallbackReason: `${selected.name}: ${message}`,
    };
  }
}

export { tf };
