import { msToNumber, type Duration } from '@temporalio/common';

/**
 * Durations such as "500ms", "30s", "2m" or "1h", read in one place for pipeline specs, CLI flags and
 * the workflows that wait on them. Temporal is handed some of these strings as they are (an activity's
 * heartbeatTimeout, a condition's timeout), so they are read with Temporal's own reader (msToNumber,
 * the `ms` package): a duration means the same to Gantry as to Temporal. Pure, so workflows may use it.
 */

/** Milliseconds of a positive duration with a unit; undefined when `text` is not one. */
export function parseDuration(text: string): number | undefined {
  // A bare number is milliseconds to `ms` but reads as seconds to many: ask for the unit instead.
  if (text.trim() === '' || Number.isFinite(Number(text))) return undefined;
  let ms: number;
  try {
    ms = msToNumber(text as Duration);
  } catch {
    return undefined;
  }
  return ms > 0 ? ms : undefined;
}

/** Why `text` was refused, for the error that names the field. */
export function notADuration(text: unknown): string {
  return `${JSON.stringify(text)} is not a duration (e.g. 30s, 2m, 1h, 500ms)`;
}

/** Milliseconds of a duration that was validated on the way in (a spec's, a flag's); throws otherwise. */
export function durationMs(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new TypeError(notADuration(text));
  return ms;
}
