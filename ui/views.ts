import { jensenShannonDivergence } from '../data/drift';
import type { ExperimentStatus, RolloutDecision, RolloutStatus } from '../workflows/api';
import type { StudyStatus } from '../workflows/tune-api';
import type { ParamValue, Space } from '../workflows/tuning/space';

/**
 * What the dashboard's pages plot, computed from the workflows' own state (no numbers of its own): a rollout's
 * windows as series over time, an experiment's arms with confidence intervals. Pure functions of their input.
 */

export interface WindowPoint {
  at: string;
  requests: number;
  errorRate: number;
  p90Ms: number | null;
  p99Ms: number | null;
  accuracy: number | null;
  labelled: number;
}

export interface RolloutPoint {
  at: string;
  phase: RolloutDecision['phase'];
  step: number | null;
  percent: number;
  action: RolloutDecision['action'];
  message: string;
  canary: WindowPoint | null;
  champion: WindowPoint | null;
  /** Jensen-Shannon divergence (bits) of the two windows' predicted classes, as the canary analysis judges it. */
  divergence: number | null;
  breaches: string[];
}

const distribution = (counts: number[]) => {
  const total = counts.reduce((a, b) => a + b, 0);
  return total > 0 ? counts.map((c) => c / total) : null;
};

function windowPoint(at: string, w: RolloutDecision['canary'] | null | undefined): WindowPoint | null {
  if (!w) return null;
  return {
    at,
    requests: w.requests,
    errorRate: w.errorRate,
    p90Ms: w.p90Ms ?? null,
    p99Ms: w.p99Ms,
    accuracy: w.feedback.accuracy,
    labelled: w.feedback.labelled,
  };
}

function rolloutPoint(d: RolloutDecision): RolloutPoint {
  const canary = d.canary?.classCounts ? distribution(d.canary.classCounts) : null;
  const champion = d.champion?.classCounts ? distribution(d.champion.classCounts) : null;
  return {
    at: d.at,
    phase: d.phase,
    step: d.step,
    percent: d.percent,
    action: d.action,
    message: d.message,
    canary: windowPoint(d.at, d.canary),
    champion: windowPoint(d.at, d.champion),
    divergence:
      canary && champion && canary.length === champion.length ? jensenShannonDivergence(canary, champion) : null,
    breaches: d.judgement?.breaches ?? [],
  };
}

export interface RolloutView {
  model: string;
  candidate: number;
  champion: number | null;
  phase: RolloutStatus['phase'];
  step: number | null;
  steps: number;
  percent: number;
  running: boolean;
  plan: RolloutStatus['plan'] | null;
  thresholds: RolloutStatus['thresholds'] | null;
  /** Every analysis, oldest first: the plotted windows. */
  analyses: RolloutPoint[];
  /** Every decision that changed something, oldest first: marked on the plots and listed. */
  decisions: RolloutPoint[];
  outcome: RolloutStatus['outcome'];
}

export function rolloutView(status: RolloutStatus, running: boolean): RolloutView {
  return {
    model: status.model,
    candidate: status.candidate,
    champion: status.champion,
    phase: status.phase,
    step: status.step,
    steps: status.steps,
    percent: status.percent,
    running,
    plan: status.plan ?? null,
    thresholds: status.thresholds ?? null,
    analyses: status.analyses.map(rolloutPoint),
    decisions: status.decisions.map(rolloutPoint),
    outcome: status.outcome,
  };
}

/** Wilson score interval of a proportion at 95 %: sound at small counts and near 0 or 1, unlike the normal one. */
export function wilsonInterval(correct: number, total: number, z = 1.959964): { low: number; high: number } | null {
  if (total <= 0) return null;
  const p = correct / total;
  const denominator = 1 + (z * z) / total;
  const centre = (p + (z * z) / (2 * total)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / total + (z * z) / (4 * total * total))) / denominator;
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

export interface ExperimentView {
  model: string;
  phase: ExperimentStatus['phase'];
  running: boolean;
  startedAt: string | null;
  endsAt: string | null;
  stoppedEarly: boolean;
  arms: {
    version: number;
    weight: number;
    requests: number;
    labelled: number;
    accuracy: number | null;
    /** 95 % Wilson interval of the online accuracy. */
    interval: { low: number; high: number } | null;
  }[];
  verdict: ExperimentStatus['verdict'];
}

export function experimentView(status: ExperimentStatus, running: boolean): ExperimentView {
  return {
    model: status.model,
    phase: status.phase,
    running,
    startedAt: status.startedAt,
    endsAt: status.endsAt,
    stoppedEarly: status.stoppedEarly,
    arms: status.arms.map((arm) => {
      const w = status.windows[String(arm.version)];
      return {
        version: arm.version,
        weight: arm.weight,
        requests: w?.requests ?? 0,
        labelled: w?.feedback.labelled ?? 0,
        accuracy: w?.feedback.accuracy ?? null,
        interval: w ? wilsonInterval(w.feedback.correct, w.feedback.labelled) : null,
      };
    }),
    verdict: status.verdict,
  };
}

/** How a study's parameter is plotted against the objective: its x-axis and, for choices, the categories in order. */
export interface StudyParamView {
  path: string;
  /** `log` for log-uniform draws, `category` for choices (and any value that is not a number). */
  scale: 'log' | 'linear' | 'category';
  /** A choice's values as text, in the space's order; the x of a trial is its value's index. */
  categories: string[] | null;
}

const valueText = (value: ParamValue) => (Array.isArray(value) ? `[${value.join(',')}]` : String(value));

/**
 * Each parameter's axis for the study page's scatter plots: from the search space when its start input was read,
 * else from the trials' values (numbers on a linear axis, anything else as categories in order of appearance).
 */
export function studyParams(status: StudyStatus, space: Space | null): StudyParamView[] {
  const paths = [...new Set([...Object.keys(space ?? {}), ...status.trials.flatMap((t) => Object.keys(t.params))])];
  return paths.sort().map((path) => {
    const values = status.trials.map((t) => t.params[path]).filter((v) => v !== undefined);
    const param = space?.[path];
    if (param && 'choice' in param) {
      const categories = param.choice.map(valueText);
      for (const v of values) if (!categories.includes(valueText(v))) categories.push(valueText(v));
      return { path, scale: 'category', categories };
    }
    if (values.some((v) => typeof v !== 'number'))
      return { path, scale: 'category', categories: [...new Set(values.map(valueText))] };
    return { path, scale: param && 'logUniform' in param ? 'log' : 'linear', categories: null };
  });
}
