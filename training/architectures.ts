import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Preprocessing } from '../data/preprocessing';
import { describeIssues } from '../validation/issues';
import type { Task } from './batches';

type Tf = typeof tfType;

/**
 * The architecture registry: a pipeline names an architecture and passes options; workers build
 * it here. Builders receive the tf namespace so this module stays light enough for the CLI to
 * import for validation without loading TensorFlow.js.
 *
 * The image models take raw pixel values (0..255) and rescale inside the graph, so the published
 * model is self-contained: a serving client sends what the dataset holds, with no preprocessing
 * to keep in sync. The tabular model takes the encoded record (data/preprocessing.ts), already
 * normalised by ingest. Dropout takes no seed: tfjs would reuse one mask for every step.
 *
 * The input: pipelines/project.ts's public ArchitectureInput extends this one with every field
 * required (pipelines imports training, not the other way round). A classifier ends in a softmax
 * over numClasses, a regression in a linear Dense(1).
 */
export interface ArchitectureInput {
  featureShape: number[];
  /** Classification when absent. */
  task?: Task;
  numClasses: number;
  seed: number;
  preprocessing?: Preprocessing | null;
}

export interface Architecture<Options extends z.ZodType = z.ZodType> {
  description: string;
  options: Options;
  build(tf: Tf, input: ArchitectureInput, options: z.output<Options>): tfType.LayersModel;
}

const mlpOptions = z
  .object({
    hiddenUnits: z.array(z.number().int().min(1).max(8192)).min(1).max(8).default([256, 128]),
    dropout: z.number().min(0).lt(1).default(0.2),
  })
  .strict();

const tabularOptions = z
  .object({
    hiddenUnits: z.array(z.number().int().min(1).max(8192)).min(1).max(8).default([64, 32]),
    dropout: z.number().min(0).lt(1).default(0.1),
    /** Batch normalisation after each hidden layer's activation. */
    batchNorm: z.boolean().default(false),
    activation: z.enum(['relu', 'tanh', 'sigmoid']).default('relu'),
  })
  .strict();

const cnnOptions = z
  .object({
    filters: z.array(z.number().int().min(1).max(1024)).min(1).max(4).default([32, 64]),
    denseUnits: z.number().int().min(1).max(8192).default(128),
    dropout: z.number().min(0).lt(1).default(0.25),
    /**
     * Batch normalisation after each convolution and the dense layer, before their ReLU (which then follows as a
     * layer of its own; the layers it normalises drop their bias, which its beta replaces). On by default: it
     * reaches 0.92 test accuracy on Fashion-MNIST in fewer epochs than the plain net's 10.
     */
    batchNorm: z.boolean().default(true),
  })
  .strict();

function defineArchitecture<O extends z.ZodType>(architecture: Architecture<O>): Architecture<O> {
  return architecture;
}

/**
 * The last layer: a softmax over the classes, or one linear unit for a regression. Seeded apart
 * from the hidden layers so that adding one leaves it as it was.
 */
function head(tf: Tf, { task, numClasses, seed }: ArchitectureInput): tfType.layers.Layer {
  const regression = task === 'regression';
  return tf.layers.dense({
    units: regression ? 1 : numClasses,
    activation: regression ? 'linear' : 'softmax',
    kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1000 }),
  });
}

export const ARCHITECTURES = {
  mlp: defineArchitecture({
    description: 'multi-layer perceptron: flatten → dense(relu) × N with dropout → softmax',
    options: mlpOptions,
    build(tf, input, { hiddenUnits, dropout }) {
      const { featureShape, seed } = input;
      const model = tf.sequential();
      model.add(tf.layers.rescaling({ scale: 1 / 255, inputShape: featureShape }));
      model.add(tf.layers.flatten());
      hiddenUnits.forEach((units, i) => {
        model.add(
          tf.layers.dense({
            units,
            activation: 'relu',
            kernelInitializer: tf.initializers.heNormal({ seed: seed + i }),
          }),
        );
        if (dropout > 0) model.add(tf.layers.dropout({ rate: dropout }));
      });
      model.add(head(tf, input));
      return model;
    },
  }),
  cnn: defineArchitecture({
    description:
      'small convolutional net: [conv3x3 [→ batch norm] → relu → maxpool2] × N → dense [→ batch norm] → relu → ' +
      'dropout → softmax (batch norm on by default)',
    options: cnnOptions,
    build(tf, input, { filters, denseUnits, dropout, batchNorm }) {
      const { featureShape, seed } = input;
      const model = tf.sequential();
      model.add(tf.layers.rescaling({ scale: 1 / 255, inputShape: featureShape }));
      /** ReLU fused into the layer, or after a batch norm that takes the layer's linear output. */
      const relu = batchNorm ? ({ activation: 'linear', useBias: false } as const) : ({ activation: 'relu' } as const);
      const normalise = () => {
        if (!batchNorm) return;
        model.add(tf.layers.batchNormalization());
        model.add(tf.layers.activation({ activation: 'relu' }));
      };
      filters.forEach((count, i) => {
        model.add(
          tf.layers.conv2d({
            filters: count,
            kernelSize: 3,
            padding: 'same',
            kernelInitializer: tf.initializers.heNormal({ seed: seed + i }),
            ...relu,
          }),
        );
        normalise();
        model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      });
      model.add(tf.layers.flatten());
      model.add(
        tf.layers.dense({
          units: denseUnits,
          kernelInitializer: tf.initializers.heNormal({ seed: seed + 50 }),
          ...relu,
        }),
      );
      normalise();
      if (dropout > 0) model.add(tf.layers.dropout({ rate: dropout }));
      model.add(head(tf, input));
      return model;
    },
  }),
  tabular: defineArchitecture({
    description:
      'multi-layer perceptron on encoded records: dense(activation) [→ batch norm] [→ dropout] × N → ' +
      'softmax (classification) or linear dense(1) (regression)',
    options: tabularOptions,
    build(tf, input, { hiddenUnits, dropout, batchNorm, activation }) {
      const { featureShape, seed } = input;
      const size = featureShape.reduce((a, b) => a * b, 1);
      const model = tf.sequential();
      if (featureShape.length !== 1) model.add(tf.layers.flatten({ inputShape: featureShape }));
      hiddenUnits.forEach((units, i) => {
        model.add(
          tf.layers.dense({
            units,
            activation,
            kernelInitializer:
              activation === 'relu'
                ? tf.initializers.heNormal({ seed: seed + i })
                : tf.initializers.glorotUniform({ seed: seed + i }),
            ...(i === 0 && featureShape.length === 1 ? { inputShape: [size] } : {}),
          }),
        );
        if (batchNorm) model.add(tf.layers.batchNormalization());
        if (dropout > 0) model.add(tf.layers.dropout({ rate: dropout }));
      });
      model.add(head(tf, input));
      return model;
    },
  }),
} satisfies Record<string, Architecture>;

export type ArchitectureName = keyof typeof ARCHITECTURES;

/**
 * Architectures a user's project registers (pipelines/load-project.ts), next to the built-ins. Their builders take
 * the richer input of pipelines/project.ts (task, preprocessing); the trainer passes that input to every builder.
 */
const registered = new Map<string, Architecture>();

/** Adds a project's architecture; a second, different definition under a taken name is refused. */
export function registerArchitecture(name: string, architecture: Architecture): void {
  if (Object.hasOwn(ARCHITECTURES, name))
    throw new Error(`model architecture "${name}" is built in; choose another name`);
  const existing = registered.get(name);
  if (existing && existing !== architecture)
    throw new Error(`model architecture "${name}" is registered twice with different definitions`);
  registered.set(name, architecture);
}

export function architectureNames(): string[] {
  return [...Object.keys(ARCHITECTURES), ...registered.keys()];
}

export function getArchitecture(name: string): Architecture {
  const own = registered.get(name);
  if (own) return own;
  if (!Object.hasOwn(ARCHITECTURES, name)) {
    throw new Error(`unknown model architecture "${name}"; known: ${architectureNames().join(', ')}`);
  }
  return ARCHITECTURES[name as ArchitectureName] as Architecture;
}

/** Builds the named architecture after checking its options (throws with the bad option named). */
export function buildModel(tf: Tf, name: string, input: ArchitectureInput, rawOptions: unknown): tfType.LayersModel {
  const architecture = getArchitecture(name);
  const options = architecture.options.safeParse(rawOptions ?? {});
  if (!options.success) {
    const reasons = describeIssues(options.error, { prefix: 'model.options' });
    throw new Error(`invalid options for architecture "${name}": ${reasons}`);
  }
  return architecture.build(tf, input, options.data);
}
