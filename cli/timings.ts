import type { RunTimings, StageTiming } from '../workflows/timings-api';

const ms = (x: number | undefined) =>
  x === undefined ? '-' : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`;

/** One stage's line: its wall time, the queue wait and run time its activity measured, and the run's parts. */
export function stageTimingLine(t: StageTiming): string {
  const own = t.runMs !== undefined ? ` (queue ${ms(t.queueMs)}, run ${ms(t.runMs)})` : '';
  const parts = t.parts
    ? `: ${Object.entries(t.parts)
        .map(([name, x]) => `${name} ${ms(x)}`)
        .join(', ')}`
    : '';
  const attempt = t.attempt !== undefined && t.attempt > 1 ? ` attempt ${t.attempt}` : '';
  return `${t.stage} ${ms(t.wallMs)}${own}${attempt}${parts}`;
}

/** The run's timings as lines: the total so far, then one per finished stage and step. */
export function timingLines(timings: RunTimings): string[] {
  return [`timings: ${ms(timings.totalMs)} in all`, ...timings.stages.map((t) => `  ${stageTimingLine(t)}`)];
}
