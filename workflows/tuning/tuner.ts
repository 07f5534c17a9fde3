import type { TuningSpec } from '../../pipelines/spec';
import { createRng, type Rng } from './prng';
import { sampleRandom, type Params, type Space } from './space';
import { sampleTpe, type Observation } from './tpe';

/**
 * The study's scheduler as pure, deterministic code over plain data: which trial trains next and how far, what a
 * finished rung means, which trial is best. The tune workflow keeps a TunerState as its state and asks
 * `nextAction` whenever a slot is free; the bench and the tests drive the same code without Temporal.
 *
 * `random` and `tpe` train every trial to `maxEpochs` (the spec's train.epochs). `asha` is asynchronous successive
 * halving (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020): rungs at minEpochs × η^k
 * epochs (and maxEpochs last); a trial that finished rung k goes on to rung k+1 once it ranks in the top 1/η of
 * every trial that reached rung k, promotions before new trials. When no trial can arrive at a rung any more (no
 * new trial may start and none below it is running) and 1/η of its trials rounds to none, its best still goes on,
 * so a small study ends with at least one trial trained in full. Trials left waiting at the end were stopped early.
 */

export type TrialState = 'running' | 'waiting' | 'completed' | 'stopped' | 'failed';

export interface TunerTrial {
  /** 1-based, in the order the trials started. */
  trial: number;
  params: Params;
  state: TrialState;
  /** Epochs trained (the last rung it finished). */
  epochs: number;
  /** The epoch the current (or last) training goes to. */
  target: number;
  /** The objective's value after each epoch trained (index = epoch − 1). */
  values: number[];
  /** Why an ASHA trial did not train to maxEpochs. */
  stoppedReason: string | null;
  error: string | null;
}

export interface TunerConfig {
  algorithm: TuningSpec['algorithm'];
  space: Space;
  goal: 'min' | 'max';
  trials: number;
  /** Epochs of all trials together, or null for no cap. */
  epochBudget: number | null;
  maxEpochs: number;
  minEpochs: number;
  reductionFactor: number;
  tpe: { startupTrials: number; candidates: number; gamma: number };
}

export interface TunerState {
  rng: Rng;
  trials: TunerTrial[];
}

export type TunerAction = { kind: 'start'; trial: TunerTrial } | { kind: 'promote'; trial: TunerTrial; rung: number };

const HIGHER_IS_BETTER = new Set(['accuracy', 'auc', 'r2']);

export function tunerConfig(tuning: TuningSpec, maxEpochs: number): TunerConfig {
  const trials = tuning.budget.trials;
  return {
    algorithm: tuning.algorithm,
    space: tuning.space,
    goal: tuning.objective.goal ?? (HIGHER_IS_BETTER.has(tuning.objective.metric) ? 'max' : 'min'),
    trials,
    epochBudget: tuning.budget.epochs ?? null,
    maxEpochs,
    minEpochs: Math.min(tuning.asha.minEpochs, maxEpochs),
    reductionFactor: tuning.asha.reductionFactor,
    tpe: {
      startupTrials: tuning.tpe.startupTrials ?? Math.min(10, Math.max(2, Math.round(trials / 3))),
      candidates: tuning.tpe.candidates,
      gamma: tuning.tpe.gamma,
    },
  };
}

export function createTuner(seed: number): TunerState {
  return { rng: createRng(seed), trials: [] };
}

/** The epochs a trial has trained at each rung: [maxEpochs] unless ASHA. */
export function rungsOf(config: TunerConfig): number[] {
  if (config.algorithm !== 'asha') return [config.maxEpochs];
  const rungs: number[] = [];
  for (let epochs = config.minEpochs; epochs < config.maxEpochs; epochs *= config.reductionFactor) rungs.push(epochs);
  rungs.push(config.maxEpochs);
  return rungs;
}

/** Lower is better, whatever the goal; a metric that is not a number ranks last. */
export function lossOf(config: TunerConfig, value: number | undefined): number {
  if (value === undefined || !Number.isFinite(value)) return Infinity;
  return config.goal === 'max' ? -value : value;
}

/** Epochs trained or being trained by every trial together. */
export function epochsCommitted(state: TunerState): number {
  return state.trials.reduce((sum, t) => sum + (t.state === 'running' ? t.target : t.epochs), 0);
}

function withinBudget(config: TunerConfig, state: TunerState, cost: number): boolean {
  return config.epochBudget === null || epochsCommitted(state) + cost <= config.epochBudget;
}

function canStartTrial(config: TunerConfig, state: TunerState): boolean {
  return state.trials.length < config.trials && withinBudget(config, state, rungsOf(config)[0]!);
}

/** The trials that reached rung `k`, best first by their value at that rung. */
function rankedAt(config: TunerConfig, state: TunerState, rung: number): TunerTrial[] {
  const epochs = rungsOf(config)[rung]!;
  return state.trials
    .filter((t) => t.state !== 'failed' && t.epochs >= epochs)
    .sort((a, b) => lossOf(config, a.values[epochs - 1]) - lossOf(config, b.values[epochs - 1]) || a.trial - b.trial);
}

/** How many of the trials at rung k go on: the top 1/η, and at least one once the rung can get no more trials. */
function promotionsAt(config: TunerConfig, state: TunerState, rung: number, reached: number): number {
  const top = Math.floor(reached / config.reductionFactor);
  if (top > 0 || reached === 0) return top;
  const epochs = rungsOf(config)[rung]!;
  const closed =
    !canStartTrial(config, state) && !state.trials.some((t) => t.state === 'running' && t.target <= epochs);
  return closed ? 1 : 0;
}

/**
 * What to train next — a waiting trial to promote, or a new trial — marked running in `state`; null when nothing
 * may start now (all slots' worth started, or the budget spent).
 */
export function nextAction(config: TunerConfig, state: TunerState): TunerAction | null {
  const rungs = rungsOf(config);
  for (let rung = rungs.length - 2; rung >= 0; rung--) {
    const ranked = rankedAt(config, state, rung);
    const top = promotionsAt(config, state, rung, ranked.length);
    const trial = ranked.slice(0, top).find((t) => t.state === 'waiting' && t.epochs === rungs[rung]);
    if (trial && withinBudget(config, state, rungs[rung + 1]! - trial.epochs)) {
      trial.state = 'running';
      trial.target = rungs[rung + 1]!;
      return { kind: 'promote', trial, rung: rung + 1 };
    }
  }
  if (!canStartTrial(config, state)) return null;
  const trial: TunerTrial = {
    trial: state.trials.length + 1,
    params: suggest(config, state),
    state: 'running',
    epochs: 0,
    target: rungs[0]!,
    values: [],
    stoppedReason: null,
    error: null,
  };
  state.trials.push(trial);
  return { kind: 'start', trial };
}

function suggest(config: TunerConfig, state: TunerState): Params {
  if (config.algorithm !== 'tpe') return sampleRandom(config.space, state.rng);
  const observations: Observation[] = state.trials
    .filter((t) => t.state === 'completed' && t.values.length > 0)
    .map((t) => ({ params: t.params, loss: lossOf(config, t.values.at(-1)) }))
    .filter((o) => Number.isFinite(o.loss));
  if (observations.length < config.tpe.startupTrials) return sampleRandom(config.space, state.rng);
  return sampleTpe(config.space, observations, config.tpe, state.rng);
}

/** A trial's training reached its target: `values` holds the objective after every epoch so far. */
export function reportTrial(config: TunerConfig, state: TunerState, trialNumber: number, values: number[]): void {
  const trial = trialOf(state, trialNumber);
  trial.values = values.slice(0, trial.target);
  trial.epochs = trial.values.length;
  trial.state = trial.epochs >= config.maxEpochs ? 'completed' : 'waiting';
}

export function failTrial(state: TunerState, trialNumber: number, error: string): void {
  const trial = trialOf(state, trialNumber);
  trial.state = 'failed';
  trial.error = error;
}

/** The study is over: trials still waiting for a promotion were stopped early, each with the reason. */
export function finishTuner(config: TunerConfig, state: TunerState): void {
  const rungs = rungsOf(config);
  for (const trial of state.trials) {
    if (trial.state !== 'waiting') continue;
    const rung = rungs.indexOf(trial.epochs);
    const ranked = rankedAt(config, state, rung);
    const rank = ranked.indexOf(trial) + 1;
    const top = promotionsAt(config, state, rung, ranked.length);
    trial.state = 'stopped';
    trial.stoppedReason =
      `rung ${rung + 1} (${trial.epochs} of ${config.maxEpochs} epochs): ranked ${rank} of ${ranked.length}; ` +
      `only the top ${top} (1/${config.reductionFactor}) trained on`;
  }
}

/** The trial with the best last value (more epochs, then the earlier trial, break ties); failed trials excluded. */
export function bestTrial(config: TunerConfig, state: TunerState): TunerTrial | null {
  let best: TunerTrial | null = null;
  for (const t of state.trials) {
    if (t.state === 'failed' || t.values.length === 0) continue;
    if (!best) {
      best = t;
      continue;
    }
    const d = lossOf(config, t.values.at(-1)) - lossOf(config, best.values.at(-1));
    if (d < 0 || (d === 0 && t.epochs > best.epochs)) best = t;
  }
  return best;
}

function trialOf(state: TunerState, trialNumber: number): TunerTrial {
  const trial = state.trials[trialNumber - 1];
  if (!trial) throw new Error(`no trial ${trialNumber}`);
  return trial;
}
