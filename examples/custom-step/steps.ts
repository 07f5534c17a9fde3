import { defineStep, type StepContext } from 'gantry';

/**
 * A data-quality gate: the training split must hold at least `minRows` examples, and no class may make up more
 * than `maxClassShare` of it (a broken export that lost most of a class would train a model that never predicts
 * it). It reads the statistics Gantry computed at ingest, so it costs nothing, and stops the run with the reason
 * when the data fails: nothing is trained, and the result says why.
 */

interface QualityOptions {
  minRows: number;
  maxClassShare: number;
}

function optionsOf(context: StepContext): QualityOptions {
  const { minRows = 1000, maxClassShare = 0.5 } = context.options as Partial<QualityOptions>;
  if (typeof minRows !== 'number' || typeof maxClassShare !== 'number')
    throw new Error('data-quality: options minRows and maxClassShare must be numbers');
  return { minRows, maxClassShare };
}

/** Examples per class of the training split, when the dataset's statistics have them. */
function classCounts(statistics: unknown): number[] | null {
  const histogram = (statistics as { train?: { labelHistogram?: unknown } } | null)?.train?.labelHistogram;
  return Array.isArray(histogram) && histogram.every((n) => typeof n === 'number') ? histogram : null;
}

export const dataQuality = defineStep({
  name: 'data-quality',
  description: 'stops the run when the training split is too small or one class dominates it',
  timeout: '2m',
  retries: 2,
  async run(context) {
    const dataset = context.outputs.dataset;
    if (!dataset) throw new Error('data-quality runs after ingest: place it at after-ingest');
    const { minRows, maxClassShare } = optionsOf(context);
    const rows = dataset.counts.train;
    const counts = classCounts(dataset.statistics) ?? [];
    const largest = counts.length ? Math.max(...counts) : 0;
    const largestShare = rows ? largest / rows : 0;
    const data = { rows, minRows, classes: counts.length, largestClassShare: largestShare, maxClassShare };
    if (rows < minRows) return { data, stop: `only ${rows} training rows, fewer than the ${minRows} required` };
    if (largestShare > maxClassShare) {
      const cls = counts.indexOf(largest);
      return {
        data,
        stop:
          `class ${cls} is ${(largestShare * 100).toFixed(1)} % of the training rows, ` +
          `more than ${maxClassShare * 100} %`,
      };
    }
    return { data };
  },
});
