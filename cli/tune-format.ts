import type { StudyStatus, TrialStatus } from '../workflows/tune-api';
import type { Params, ParamValue } from '../workflows/tuning/space';

/** A study as text: a header, a table of trials (params, state, epochs, metric, why it stopped) and the best. */

function formatValue(value: ParamValue): string {
  if (Array.isArray(value)) return `[${value.join(',')}]`;
  if (typeof value !== 'number' || Number.isInteger(value)) return String(value);
  return Math.abs(value) < 0.01 ? value.toExponential(2) : value.toPrecision(3);
}

/** Each path by its last segment, unless two paths share one. */
function shortNames(keys: string[]): Map<string, string> {
  const last = (key: string) => key.split('.').at(-1)!;
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(last(key), (counts.get(last(key)) ?? 0) + 1);
  return new Map(keys.map((key) => [key, counts.get(last(key))! > 1 ? key : last(key)]));
}

export function formatParams(params: Params, names = shortNames(Object.keys(params))): string {
  return Object.keys(params)
    .sort()
    .map((key) => `${names.get(key) ?? key}=${formatValue(params[key]!)}`)
    .join(' ');
}

const metricText = (value: number | null) => (value === null ? '-' : value.toFixed(4));

function stateText(trial: TrialStatus): string {
  if (trial.state === 'running' && trial.progress)
    return `running (epoch ${trial.progress.epoch} step ${trial.progress.step}/${trial.progress.stepsPerEpoch})`;
  return trial.state;
}

function note(trial: TrialStatus): string {
  const parts: string[] = [];
  if (trial.stoppedReason) parts.push(`stopped early: ${trial.stoppedReason}`);
  if (trial.error) parts.push(`failed: ${trial.error}`);
  if (trial.attempts > trial.trainings) parts.push(`${trial.attempts - trial.trainings} retried attempt(s)`);
  return parts.join('; ');
}

export function formatStudy(status: StudyStatus): string {
  const metric = status.objective.metric;
  const names = shortNames([...new Set(status.trials.flatMap((t) => Object.keys(t.params)))]);
  const header =
    `study ${status.studyId}: ${status.status} · ${status.algorithm} · objective validation ${metric} ` +
    `(${status.objective.goal}) · ${status.trials.length}/${status.budget.trials} trials` +
    `${status.budget.epochs !== null ? ` · ${status.epochsTrained}/${status.budget.epochs} epochs` : ''}` +
    ` · parallel ${status.parallelism}`;
  const rows = status.trials.map((t) => [
    String(t.trial),
    stateText(t),
    `${t.epochs}/${t.targetEpochs}`,
    metricText(t.metric),
    metricText(t.bestMetric),
    formatParams(t.params, names),
    note(t),
  ]);
  const columns = ['trial', 'state', 'epochs', metric, `best ${metric}`, 'params', ''];
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) =>
        i === 0 || i === 2 || i === 3 || i === 4 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!),
      )
      .join('  ')
      .trimEnd();
  const lines = [header, line(columns), ...rows.map(line)];
  if (status.best)
    lines.push(
      `best: trial ${status.best.trial}, validation ${metric} ${metricText(status.best.metric)} after ` +
        `${status.best.epochs} epochs (${formatParams(status.best.params, names)})`,
    );
  if (status.runId)
    lines.push(`run:  ${status.runId}${status.version !== null ? ` registered v${status.version}` : ''}`);
  if (status.error) lines.push(`error: ${status.error}`);
  return lines.join('\n');
}

/** One line per change of a trial (started, promoted, finished, stopped, failed), for --follow. */
export function trialEvents(previous: StudyStatus | null, current: StudyStatus): string[] {
  const lines: string[] = [];
  const before = new Map(previous?.trials.map((t) => [t.trial, t]) ?? []);
  const metric = current.objective.metric;
  for (const t of current.trials) {
    const old = before.get(t.trial);
    const head = `[${current.studyId}] trial ${t.trial}`;
    if (!old || (old.state !== 'running' && t.state === 'running'))
      lines.push(`${head} trains to epoch ${t.targetEpochs}: ${formatParams(t.params)}`);
    if (old && old.state === t.state && old.epochs === t.epochs) continue;
    if (t.state === 'waiting' || t.state === 'completed')
      lines.push(`${head} ${t.state} after ${t.epochs} epochs: validation ${metric} ${metricText(t.metric)}`);
    if (t.state === 'stopped') lines.push(`${head} stopped early: ${t.stoppedReason}`);
    if (t.state === 'failed') lines.push(`${head} failed: ${t.error}`);
  }
  if (previous?.status !== current.status && current.status !== 'running')
    lines.push(`[${current.studyId}] study ${current.status}${current.runId ? ` (run ${current.runId})` : ''}`);
  return lines;
}
