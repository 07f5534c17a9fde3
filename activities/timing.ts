import { Context } from '@temporalio/activity';
import type { ActivityTiming } from '../workflows/timings-api';

/**
 * Measures one activity attempt for its run's per-stage timings: the wait in the task queue (Temporal's schedule
 * time of this attempt to now; worker and server clocks are assumed close, as on one host or with NTP) and the
 * run, split into named parts. Created first thing in the activity.
 */
export class ActivityClock {
  private readonly started = Date.now();
  private readonly queueMs: number;
  private readonly attempt: number;
  private readonly parts: Record<string, number> = {};

  constructor() {
    let info: Context['info'] | null = null;
    try {
      info = Context.current().info;
    } catch {
      // Called outside an activity (a direct call in a script): no queue to have waited in.
    }
    this.queueMs = info ? Math.max(0, this.started - info.currentAttemptScheduledTimestampMs) : 0;
    this.attempt = info?.attempt ?? 1;
  }

  /** Runs `work` as the part `name` (parts of the same name add up). */
  async part<T>(name: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.add(name, performance.now() - started);
    }
  }

  add(name: string, ms: number): void {
    this.parts[name] = (this.parts[name] ?? 0) + ms;
  }

  timing(): ActivityTiming {
    const parts = Object.entries(this.parts);
    return {
      queueMs: this.queueMs,
      runMs: Date.now() - this.started,
      attempt: this.attempt,
      ...(parts.length ? { parts: Object.fromEntries(parts.map(([name, ms]) => [name, round(ms)])) } : {}),
    };
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10;
