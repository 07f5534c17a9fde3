import { expect, it } from 'vitest';
import { fitSignature } from '../activities/import-model';

/** When an imported signature can be run on a dataset's test split (activities/import-model.ts fitSignature). */

const image = { featureShape: [28, 28, 1], task: 'classification' as const, numClasses: 10 };
const tensor = (key: string, shape: number[] | null, dtype = 'DT_FLOAT') => ({ key, dtype, shape });

it('feeds an input of the feature shape as it is, and reshapes one of the same size', () => {
  expect(fitSignature([tensor('x', [-1, 28, 28, 1])], [tensor('p', [-1, 10])], image)).toEqual({
    inputShape: [28, 28, 1],
  });
  expect(fitSignature([tensor('x', [-1, -1, -1, 1])], [tensor('p', [-1, 10])], image)).toEqual({
    inputShape: [28, 28, 1],
  });
  expect(fitSignature([tensor('x', [-1, 784])], [tensor('p', [-1, 10])], image)).toEqual({ inputShape: [784] });
});

it('says why a signature does not fit', () => {
  const reason = (...args: Parameters<typeof fitSignature>) => (fitSignature(...args) as { reason: string }).reason;
  expect(reason([tensor('x', [-1, 5])], [tensor('y', [-1, 1])], image)).toBe(
    'input "x" takes [?, 5]; the dataset\'s examples are [28, 28, 1] (784 values)',
  );
  expect(reason([tensor('x', [-1, 784])], [tensor('p', [-1, 3])], image)).toContain('the dataset has 10 classes');
  expect(reason([tensor('x', [-1, 784], 'DT_INT64')], [tensor('p', [-1, 10])], image)).toBe(
    'input "x" is DT_INT64; the dataset\'s features are floats',
  );
  expect(reason([tensor('a', [-1, 784]), tensor('b', [-1, 1])], [tensor('p', [-1, 10])], image)).toBe(
    'the signature has 2 inputs; evaluation feeds one',
  );
  expect(reason([tensor('x', null)], [tensor('p', [-1, 10])], image)).toBe('input "x" has an unknown rank');
});

it('takes one value per example for a regression', () => {
  const cars = { featureShape: [7], task: 'regression' as const, numClasses: 1 };
  expect(fitSignature([tensor('x', [-1, 7])], [tensor('y', [-1, 1])], cars)).toEqual({ inputShape: [7] });
  expect(fitSignature([tensor('x', [-1, 7])], [tensor('y', [-1])], cars)).toEqual({ inputShape: [7] });
  expect(fitSignature([tensor('x', [-1, 7])], [tensor('y', [-1, 2])], cars)).toHaveProperty('reason');
});
