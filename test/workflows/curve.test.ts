import { expect, it } from 'vitest';
import { MAX_CURVE_POINTS, recordEpoch, type EpochPoint } from '../../workflows/curve';

const epoch = (n: number, loss: number) => ({
  epoch: n,
  loss,
  accuracy: 0.5,
  valLoss: loss,
  valAccuracy: 0.5,
  seconds: 1,
});

it('keeps one point per epoch in order; a retried attempt replaces a lost one, never the reverse', () => {
  const curve: EpochPoint[] = [];
  recordEpoch(curve, epoch(2, 0.8), 1);
  recordEpoch(curve, epoch(1, 0.9), 1);
  // The same epoch again (every report after it carries it): no second point.
  recordEpoch(curve, epoch(2, 0.8), 1);
  expect(curve.map((p) => [p.epoch, p.loss, p.attempt])).toEqual([
    [1, 0.9, 1],
    [2, 0.8, 1],
  ]);
  recordEpoch(curve, epoch(2, 0.7), 2);
  // A late signal of the lost attempt 1 does not overwrite what attempt 2 measured.
  recordEpoch(curve, epoch(2, 0.8), 1);
  expect(curve[1]).toMatchObject({ epoch: 2, loss: 0.7, attempt: 2 });
});

it('bounds the curve, dropping the oldest epochs', () => {
  const curve: EpochPoint[] = [];
  for (let n = 1; n <= MAX_CURVE_POINTS + 5; n++) recordEpoch(curve, epoch(n, 1 / n), 1);
  expect(curve).toHaveLength(MAX_CURVE_POINTS);
  expect(curve[0]!.epoch).toBe(6);
});
