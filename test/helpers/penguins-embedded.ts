import type { SymbolicTensor } from '@tensorflow/tfjs';
import { z } from 'zod';
import { defineArchitecture, tabularInputs } from '../../pipelines/project';

/**
 * A project's own architecture with several inputs over tabular data (penguins): `numeric` → Dense; each
 * categorical column (`Island`, `Sex`) → Embedding → Flatten; Concatenate → softmax. Seeded, so two builds are the
 * same model. Shared by the tests that train, serve and publish such a model.
 */
export const penguinsEmbedded = defineArchitecture({
  name: 'penguins-embedded',
  description: 'numeric columns through a Dense layer, each categorical column through an embedding',
  options: z
    .object({
      hidden: z.number().int().min(1).max(256).default(16),
      embedding: z.number().int().min(1).max(16).default(2),
    })
    .strict(),
  build(tf, input, options) {
    const { numeric, categorical, all } = tabularInputs(tf, input);
    const seeded = (i: number) => tf.initializers.glorotUniform({ seed: input.seed + i });
    const dense = tf.layers
      .dense({ units: options.hidden, activation: 'relu', kernelInitializer: seeded(0) })
      .apply(numeric!) as SymbolicTensor;
    const embeddings = categorical.map(
      (c, i) =>
        tf.layers.flatten().apply(
          tf.layers
            .embedding({
              inputDim: c.vocabularySize,
              outputDim: options.embedding,
              embeddingsInitializer: tf.initializers.randomUniform({ minval: -0.05, maxval: 0.05, seed: 10 + i }),
            })
            .apply(c.input),
        ) as SymbolicTensor,
    );
    const joined = tf.layers.concatenate().apply([dense, ...embeddings]) as SymbolicTensor;
    const output = tf.layers
      .dense({ units: input.numClasses, activation: 'softmax', kernelInitializer: seeded(1) })
      .apply(joined) as SymbolicTensor;
    return tf.model({ inputs: all, outputs: output });
  },
});
