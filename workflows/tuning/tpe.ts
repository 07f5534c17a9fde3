import { nextFloat, nextGaussian, nextInt, type Rng } from './prng';
import { dimensionOf, toPoint, toValue, type Dimension, type Params, type Space } from './space';

/**
 * A tree-structured Parzen estimator (Bergstra et al., "Algorithms for Hyper-Parameter Optimization", 2011), per
 * dimension as Optuna's default TPE: the finished trials are split into the best `gamma` share and the rest, each
 * side's values become a density l(x) and g(x) (a mixture of truncated Gaussians around the observations plus a
 * wide prior; smoothed counts for choices), and of `candidates` draws from l the one with the highest l/g wins.
 */

export interface Observation {
  params: Params;
  /** Lower is better (a maximised metric is negated by the caller). */
  loss: number;
}

export interface TpeOptions {
  gamma: number;
  candidates: number;
}

export function sampleTpe(space: Space, observations: readonly Observation[], options: TpeOptions, rng: Rng): Params {
  const sorted = [...observations].sort((a, b) => a.loss - b.loss);
  const goodCount = Math.max(1, Math.ceil(options.gamma * sorted.length));
  const good = sorted.slice(0, goodCount);
  const bad = sorted.slice(goodCount);
  const params: Params = {};
  for (const key of Object.keys(space).sort()) {
    const dimension = dimensionOf(space[key]!);
    const points = (side: Observation[]) =>
      side.flatMap((o) => {
        const value = o.params[key];
        const point = value === undefined ? undefined : toPoint(dimension, value);
        return point === undefined ? [] : [point];
      });
    const x =
      dimension.kind === 'choice'
        ? bestChoice(dimension.values.length, points(good), points(bad), options.candidates, rng)
        : bestReal(dimension, points(good), points(bad), options.candidates, rng);
    params[key] = toValue(dimension, x);
  }
  return params;
}

/** The choice index whose l/g is highest among `candidates` draws from l. */
function bestChoice(count: number, good: number[], bad: number[], candidates: number, rng: Rng): number {
  const weights = (points: number[]) => {
    // One pseudo-observation spread over the choices keeps every choice possible.
    const w = Array.from({ length: count }, () => 1 / count);
    for (const p of points) w[p]! += 1;
    const total = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / total);
  };
  const l = weights(good);
  const g = weights(bad);
  let best = 0;
  let bestScore = -Infinity;
  for (let i = 0; i < candidates; i++) {
    let u = nextFloat(rng);
    let pick = 0;
    while (pick < count - 1 && u >= l[pick]!) u -= l[pick++]!;
    const score = Math.log(l[pick]!) - Math.log(g[pick]!);
    if (score > bestScore) [best, bestScore] = [pick, score];
  }
  return best;
}

interface Mixture {
  mus: number[];
  sigmas: number[];
}

/** The Parzen estimator of `points` in [low, high]: one Gaussian per point and a prior over the whole range. */
function parzen(points: number[], low: number, high: number): Mixture {
  const range = high - low;
  const mus = [...points, (low + high) / 2].sort((a, b) => a - b);
  // Each component is as wide as the larger gap to its neighbours (hyperopt's rule), within sensible bounds.
  const minSigma = range / Math.min(100, 1 + mus.length);
  const sigmas = mus.map((mu, i) => {
    const left = mu - (i > 0 ? mus[i - 1]! : low);
    const right = (i < mus.length - 1 ? mus[i + 1]! : high) - mu;
    return Math.min(range, Math.max(minSigma, left, right));
  });
  // The prior is the full range wide, wherever it sorted to.
  const prior = mus.indexOf((low + high) / 2);
  sigmas[prior] = range;
  return { mus, sigmas };
}

function normalCdf(z: number): number {
  return 0.5 * (1 + erf(z / Math.SQRT2));
}

/** Abramowitz and Stegun 7.1.26 (error below 1.5e-7): plenty for comparing densities. */
function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return sign * y;
}

/** log of the mixture's density at x, each component truncated to [low, high]. */
function logDensity(m: Mixture, x: number, low: number, high: number): number {
  let total = 0;
  for (let i = 0; i < m.mus.length; i++) {
    const mu = m.mus[i]!;
    const sigma = m.sigmas[i]!;
    const mass = Math.max(1e-12, normalCdf((high - mu) / sigma) - normalCdf((low - mu) / sigma));
    const z = (x - mu) / sigma;
    total += Math.exp(-0.5 * z * z) / (sigma * Math.sqrt(2 * Math.PI) * mass);
  }
  return Math.log(Math.max(1e-300, total / m.mus.length));
}

function drawFrom(m: Mixture, low: number, high: number, rng: Rng): number {
  const i = nextInt(rng, m.mus.length);
  // Rejection keeps the draw inside the range; a component almost wholly outside it is clipped instead.
  for (let tries = 0; tries < 50; tries++) {
    const x = m.mus[i]! + m.sigmas[i]! * nextGaussian(rng);
    if (x >= low && x <= high) return x;
  }
  return Math.min(high, Math.max(low, m.mus[i]!));
}

function bestReal(
  dimension: Extract<Dimension, { kind: 'real' }>,
  good: number[],
  bad: number[],
  candidates: number,
  rng: Rng,
): number {
  const { low, high } = dimension;
  const l = parzen(good, low, high);
  const g = parzen(bad, low, high);
  let best = (low + high) / 2;
  let bestScore = -Infinity;
  for (let i = 0; i < candidates; i++) {
    const x = drawFrom(l, low, high, rng);
    const score = logDensity(l, x, low, high) - logDensity(g, x, low, high);
    if (score > bestScore) [best, bestScore] = [x, score];
  }
  return best;
}
