import { describe, expect, it } from 'vitest';
import { TuningSpecSchema, type TuningSpec } from '../pipelines/spec';
import { createRng, nextFloat } from '../workflows/tuning/prng';
import { cornerParams, sampleRandom, withParams } from '../workflows/tuning/space';
import {
  bestTrial,
  createTuner,
  finishTuner,
  nextAction,
  reportTrial,
  rungsOf,
  tunerConfig,
  type TunerConfig,
  type TunerState,
} from '../workflows/tuning/tuner';

// The tuners are pure code over a seeded generator: these drive them with toy objectives, no Temporal, no training.

/** A 2-D bowl with its minimum at lr = 1e-3, d = 0.3 (lr searched on a log scale). */
const bowl = (p: Record<string, unknown>) =>
  (Math.log10(p['train.learningRate'] as number) + 3) ** 2 + 4 * ((p['model.options.dropout'] as number) - 0.3) ** 2;

function tuning(overrides: Record<string, unknown>): TuningSpec {
  return TuningSpecSchema.parse({
    space: { 'train.learningRate': { logUniform: [1e-6, 1e-1] }, 'model.options.dropout': { uniform: [0, 1] } },
    objective: { metric: 'loss' },
    ...overrides,
  });
}

/** One trial at a time, each finishing before the next starts; the best value found. */
function runSequential(config: TunerConfig, state: TunerState, objective: (p: Record<string, unknown>) => number) {
  for (let action = nextAction(config, state); action; action = nextAction(config, state)) {
    const value = objective(action.trial.params);
    reportTrial(
      config,
      state,
      action.trial.trial,
      Array.from({ length: action.trial.target }, () => value),
    );
  }
  return Math.min(...state.trials.map((t) => t.values.at(-1)!));
}

/** As many trials at once as the tuner will start, all finishing before the next wave: successive halving. */
function runWaves(config: TunerConfig, state: TunerState, objective: (p: Record<string, unknown>) => number) {
  for (;;) {
    const wave = [];
    for (let action = nextAction(config, state); action; action = nextAction(config, state)) wave.push(action);
    if (wave.length === 0) return;
    for (const { trial } of wave)
      reportTrial(
        config,
        state,
        trial.trial,
        Array.from({ length: trial.target }, () => objective(trial.params)),
      );
  }
}

describe('tuners', () => {
  it('the generator is seeded: the same seed draws the same numbers, another seed others', () => {
    const a = createRng(7);
    const b = createRng(7);
    const c = createRng(8);
    const draws = (rng: ReturnType<typeof createRng>) => Array.from({ length: 5 }, () => nextFloat(rng));
    const fromA = draws(a);
    expect(draws(b)).toEqual(fromA);
    expect(draws(c)).not.toEqual(fromA);
    expect(fromA.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('random samples stay in their ranges and choices; params set dotted paths of a copy', () => {
    const space = tuning({
      space: {
        'train.learningRate': { logUniform: [1e-4, 1e-2] },
        'train.batchSize': { int: [16, 64] },
        'model.options.hiddenUnits': { choice: [[64], [128, 64]] },
      },
    }).space;
    const rng = createRng(3);
    for (let i = 0; i < 200; i++) {
      const p = sampleRandom(space, rng);
      expect(p['train.learningRate']).toBeGreaterThanOrEqual(1e-4);
      expect(p['train.learningRate']).toBeLessThanOrEqual(1e-2);
      expect(Number.isInteger(p['train.batchSize'])).toBe(true);
      expect(p['train.batchSize']).toBeGreaterThanOrEqual(16);
      expect(p['train.batchSize']).toBeLessThanOrEqual(64);
      expect([[64], [128, 64]]).toContainEqual(p['model.options.hiddenUnits']);
    }
    const spec = { train: { learningRate: 1 }, model: { options: {} } };
    const changed = withParams(spec, { 'train.learningRate': 0.5, 'model.options.hiddenUnits': [8] });
    expect(changed).toEqual({ train: { learningRate: 0.5 }, model: { options: { hiddenUnits: [8] } } });
    expect(spec.train.learningRate).toBe(1);
    expect(cornerParams(space)).toContainEqual({ 'train.batchSize': 16 });
    expect(cornerParams(space)).toContainEqual({ 'train.batchSize': 64 });
  });

  it('TPE finds a lower point of a 2-D bowl than random search with the same trials and seeds', () => {
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
    const mean = (algorithm: string) => {
      const bests = seeds.map((seed) => {
        const spec = tuning({ algorithm, budget: { trials: 40 }, seed });
        return runSequential(tunerConfig(spec, 1), createTuner(seed), bowl);
      });
      return bests.reduce((a, b) => a + b, 0) / bests.length;
    };
    const random = mean('random');
    const tpe = mean('tpe');
    expect(tpe).toBeLessThan(random / 2);
  });

  it('ASHA promotes the top 1/η of each rung and stops the rest early, saying why', () => {
    // 27 trials, η = 3, rungs at 1, 3 and 9 epochs; a trial's value is its quality whatever the epoch.
    const spec = tuning({ algorithm: 'asha', budget: { trials: 27 }, asha: { minEpochs: 1, reductionFactor: 3 } });
    const config = tunerConfig(spec, 9);
    expect(rungsOf(config)).toEqual([1, 3, 9]);
    const state = createTuner(11);
    runWaves(config, state, bowl);
    finishTuner(config, state);
    const reached = (epochs: number) => state.trials.filter((t) => t.epochs >= epochs);
    expect(reached(1)).toHaveLength(27);
    expect(reached(3)).toHaveLength(9);
    expect(reached(9)).toHaveLength(3);
    expect(state.trials.filter((t) => t.state === 'completed')).toHaveLength(3);
    const stopped = state.trials.filter((t) => t.state === 'stopped');
    expect(stopped).toHaveLength(24);
    expect(stopped[0]!.stoppedReason).toMatch(
      /^rung \d \(\d of 9 epochs\): ranked \d+ of \d+; only the top \d+ \(1\/3\)/,
    );
    // The best of all 27 is promoted whenever it finishes a rung: it is among the trials trained in full.
    const overall = [...state.trials].sort((a, b) => a.values[0]! - b.values[0]!)[0]!;
    expect(overall.state).toBe('completed');
    expect(bestTrial(config, state)).toBe(overall);

    // Asynchronously (one trial at a time) a rung promotes as soon as 1/η of it is known, so later, better trials
    // can promote more than 1/η in all (the paper's mispromotions); never fewer, and the best still goes all the way.
    const async = createTuner(11);
    runSequential(config, async, bowl);
    finishTuner(config, async);
    expect(async.trials.filter((t) => t.epochs >= 3).length).toBeGreaterThanOrEqual(9);
    expect(async.trials.filter((t) => t.epochs >= 3).length).toBeLessThan(27);
    expect(bestTrial(config, async)!.state).toBe('completed');
  });

  it('ASHA trains the best of a small study in full, and an epoch budget caps the epochs', () => {
    const spec = tuning({ algorithm: 'asha', budget: { trials: 4 }, asha: { minEpochs: 1, reductionFactor: 3 } });
    const config = tunerConfig(spec, 12);
    expect(rungsOf(config)).toEqual([1, 3, 9, 12]);
    const state = createTuner(5);
    runSequential(config, state, bowl);
    finishTuner(config, state);
    // floor(4/3) = 1 goes on from rung 1; from then on each rung has one trial, whose best goes on all the same.
    expect(state.trials.filter((t) => t.state === 'completed')).toHaveLength(1);
    expect(state.trials.map((t) => t.epochs).sort((a, b) => a - b)).toEqual([1, 1, 1, 12]);

    const capped = tunerConfig(tuning({ algorithm: 'random', budget: { trials: 10, epochs: 25 } }), 6);
    const cappedState = createTuner(5);
    runSequential(capped, cappedState, bowl);
    expect(cappedState.trials).toHaveLength(4);
  });

  it('parallel slots: a running trial holds its slot, the tuner waits for results before promoting', () => {
    const spec = tuning({ algorithm: 'asha', budget: { trials: 6 }, asha: { minEpochs: 1, reductionFactor: 2 } });
    const config = tunerConfig(spec, 4);
    const state = createTuner(2);
    const first = nextAction(config, state)!;
    const second = nextAction(config, state)!;
    expect([first.kind, second.kind]).toEqual(['start', 'start']);
    reportTrial(config, state, first.trial.trial, [0.5]);
    reportTrial(config, state, second.trial.trial, [0.9]);
    // Two at rung 1, η = 2: the better one (0.5 with the goal min) goes on first.
    const third = nextAction(config, state)!;
    expect(third).toMatchObject({ kind: 'promote', rung: 1 });
    expect(third.trial.trial).toBe(first.trial.trial);
    expect(third.trial.target).toBe(2);
  });
});

describe('gantry tune input', () => {
  it('refuses a space value the spec cannot take, naming the parameter, before anything starts', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const { resolveTuningSpec } = await import('../cli/commands/tune');
    const { default: fashionMnist } = await import('../pipelines/fashion-mnist');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-tune-spec-'));
    const file = path.join(dir, 'bad.json');
    const space = {
      'model.options.dropout': { uniform: [0, 1.5] },
      'train.learningRate': { logUniform: [1e-4, 1e-2] },
    };
    await writeFile(file, JSON.stringify({ ...fashionMnist, tuning: { space } }));
    await expect(resolveTuningSpec(file, { set: [] })).rejects.toThrow(
      /tuning\.space\.model\.options\.dropout: the spec cannot take 1\.5/,
    );
    // --trials and --parallel land in the spec's tuning section.
    const good = await resolveTuningSpec('fashion-mnist', { set: [], trials: '5', parallel: '3' });
    expect(good.tuning).toMatchObject({ budget: { trials: 5 }, parallelism: 3, algorithm: 'asha' });
    await expect(resolveTuningSpec('fashion-mnist', { set: ['tuning.budget.trials=0'] })).rejects.toThrow(
      /tuning\.budget\.trials/,
    );
  });
});
