import { definePipeline, defineProject } from 'gantry';

/**
 * Cars (406 models from 1970–1982, vega-datasets' copy): miles per gallon from cylinders, displacement, horsepower,
 * weight, acceleration, year and origin. A regression: the label is a number. Eight cars have no mpg (their rows are
 * dropped) and six no horsepower (imputed). The name is an identifier, not a feature.
 */
const cars = definePipeline({
  name: 'cars',
  description: 'Fuel economy (miles per gallon) of a car from its specification',
  data: {
    source: 'json',
    path: 'node_modules/vega-datasets/data/cars.json',
    label: 'Miles_per_Gallon',
    columns: { Name: { type: 'ignore' }, Year: { type: 'categorical' } },
    testFraction: 0.2,
    validationFraction: 0.15,
  },
  model: { name: 'cars', architecture: 'tabular', options: { hiddenUnits: [32, 16], dropout: 0 } },
  train: { epochs: 80, batchSize: 16, learningRate: 0.01 },
  evaluation: { gates: [{ metric: 'rmse', max: 4.5, maxWorsening: 0.3 }] },
});

export default defineProject({ name: 'cars', pipelines: [cars] });
