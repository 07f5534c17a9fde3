import { definePipeline, defineProject } from 'gantry';

/**
 * Palmer Penguins (344 birds, vega-datasets' copy): the species from beak and flipper measurements, body mass,
 * island and sex. Numeric and categorical columns, and missing values (two birds have no measurements at all, eleven
 * no sex): imputed from the training split, the same way the model server imputes a value a request leaves out.
 */
const penguins = definePipeline({
  name: 'penguins',
  description: 'Penguin species from measurements, island and sex',
  data: {
    source: 'json',
    path: 'node_modules/vega-datasets/data/penguins.json',
    label: 'Species',
    missing: 'impute',
    testFraction: 0.25,
    validationFraction: 0.15,
  },
  model: { name: 'penguins', architecture: 'tabular', options: { hiddenUnits: [32, 16], dropout: 0.1 } },
  train: { epochs: 40, batchSize: 16, learningRate: 0.01 },
  evaluation: { minAccuracy: 0.9, minAccuracyDelta: -0.02, gates: [{ metric: 'logLoss', max: 0.4 }] },
  deployment: {
    rollout: {
      steps: [
        { percent: 50, bake: '3s' },
        { percent: 100, bake: '2s' },
      ],
      analysisInterval: '1s',
      minRequests: 20,
      maxExtensions: 10,
      thresholds: { minFeedback: 20, maxAccuracyDrop: 0.2, maxP99LatencyRatio: 10, maxPredictionDivergence: 0.3 },
    },
  },
});

export default defineProject({ name: 'penguins', pipelines: [penguins] });
