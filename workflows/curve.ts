import type { EpochMetrics } from '../training/checkpoint';

/**
 * A run's learning curve as its progress query returns it: one point per finished epoch, kept by the
 * workflow from the trainer's progress signals (each carries the last finished epoch, so a lost signal is made
 * good by the next). Pure and deterministic: it runs in workflow code.
 */

export interface EpochPoint {
  epoch: number;
  /** The training attempt that finished this epoch (a retried attempt's epochs replace the lost one's). */
  attempt: number;
  loss: number;
  accuracy: number;
  valLoss: number;
  valAccuracy: number;
}

/** Enough for any real run; bounds the query's payload (about 100 bytes a point) far below Temporal's limits. */
export const MAX_CURVE_POINTS = 1000;

/** `curve` with `metrics` (finished by `attempt`) in its place, ordered by epoch; the same array, changed. */
export function recordEpoch(curve: EpochPoint[], metrics: EpochMetrics, attempt: number): EpochPoint[] {
  const point: EpochPoint = {
    epoch: metrics.epoch,
    attempt,
    loss: metrics.loss,
    accuracy: metrics.accuracy,
    valLoss: metrics.valLoss,
    valAccuracy: metrics.valAccuracy,
  };
  const at = curve.findIndex((p) => p.epoch === point.epoch);
  if (at >= 0) {
    // An older attempt's late signal never overwrites what a newer attempt measured.
    if (curve[at]!.attempt <= attempt) curve[at] = point;
    return curve;
  }
  curve.push(point);
  curve.sort((a, b) => a.epoch - b.epoch);
  if (curve.length > MAX_CURVE_POINTS) curve.splice(0, curve.length - MAX_CURVE_POINTS);
  return curve;
}
