import type { SearchParam } from '../../pipelines/spec';
import { nextFloat, nextInt, type Rng } from './prng';

/**
 * A search space's dimensions in the form the samplers work in: a real interval (log-uniform ones in log space,
 * integers widened by half a step each side and rounded back) or a list of choices.
 */

export type ParamValue = number | string | boolean | number[];
export type Params = Record<string, ParamValue>;
export type Space = Record<string, SearchParam>;

export type Dimension =
  | { kind: 'real'; low: number; high: number; log: boolean; integer: boolean }
  | { kind: 'choice'; values: ParamValue[] };

export function dimensionOf(param: SearchParam): Dimension {
  if ('logUniform' in param) {
    const [low, high] = param.logUniform;
    return { kind: 'real', low: Math.log(low), high: Math.log(high), log: true, integer: false };
  }
  if ('uniform' in param)
    return { kind: 'real', low: param.uniform[0], high: param.uniform[1], log: false, integer: false };
  if ('int' in param)
    return { kind: 'real', low: param.int[0] - 0.5, high: param.int[1] + 0.5, log: false, integer: true };
  return { kind: 'choice', values: param.choice };
}

/** A point of the sampler's space (a log, a widened integer, a choice's index) as the spec's value. */
export function toValue(dimension: Dimension, x: number): ParamValue {
  if (dimension.kind === 'choice') return dimension.values[x]!;
  const clipped = Math.min(dimension.high, Math.max(dimension.low, x));
  if (dimension.integer) {
    // The widened ends round outwards by half a step: pull them back in.
    return Math.min(Math.round(dimension.high - 0.5), Math.max(Math.round(dimension.low + 0.5), Math.round(clipped)));
  }
  return dimension.log ? Math.exp(clipped) : clipped;
}

/** A spec value as a point of the sampler's space; undefined when the value is not in the dimension. */
export function toPoint(dimension: Dimension, value: ParamValue): number | undefined {
  if (dimension.kind === 'choice') {
    const key = JSON.stringify(value);
    const index = dimension.values.findIndex((v) => JSON.stringify(v) === key);
    return index < 0 ? undefined : index;
  }
  if (typeof value !== 'number') return undefined;
  return dimension.log ? Math.log(value) : value;
}

export function sampleRandom(space: Space, rng: Rng): Params {
  const params: Params = {};
  // Sorted keys: the order of the spec's object never changes which value a dimension draws.
  for (const key of Object.keys(space).sort()) {
    const dimension = dimensionOf(space[key]!);
    params[key] =
      dimension.kind === 'choice'
        ? dimension.values[nextInt(rng, dimension.values.length)]!
        : toValue(dimension, dimension.low + nextFloat(rng) * (dimension.high - dimension.low));
  }
  return params;
}

/** The extreme values of each dimension: a study checks that the spec takes them before it starts. */
export function cornerParams(space: Space): Params[] {
  const corners: Params[] = [];
  for (const [key, param] of Object.entries(space)) {
    const dimension = dimensionOf(param);
    const values =
      dimension.kind === 'choice'
        ? dimension.values
        : [toValue(dimension, dimension.low), toValue(dimension, dimension.high)];
    for (const value of values) corners.push({ [key]: value });
  }
  return corners;
}

const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** A deep copy of plain JSON data (workflow code has no structuredClone). */
const copyOf = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** A copy of `spec` with each dotted path of `params` set to its value (objects made on the way). */
export function withParams<T>(spec: T, params: Params): T {
  const copy = copyOf(spec) as Record<string, unknown>;
  for (const [path, value] of Object.entries(params)) {
    const keys = path.split('.');
    let node = copy;
    keys.forEach((key, i) => {
      if (UNSAFE_KEYS.has(key)) throw new Error(`"${path}": "${key}" is not a field of the spec`);
      if (i === keys.length - 1) {
        node[key] = copyOf(value);
        return;
      }
      const next = Object.hasOwn(node, key) ? node[key] : undefined;
      if (next === undefined) node[key] = {};
      else if (typeof next !== 'object' || next === null)
        throw new Error(`"${path}": "${key}" is not an object, so nothing can be set inside it`);
      node = node[key] as Record<string, unknown>;
    });
  }
  return copy as T;
}
