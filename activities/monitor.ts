import { ServingClient } from '../serving/client';
import { diffSnapshots, mergeSnapshots, servingSnapshot, type MetricsSnapshot } from '../serving/metrics-snapshot';
import {
  shadowWindow,
  versionWindow,
  windowStats,
  type ShadowWindow,
  type VersionWindow,
} from '../serving/metrics-window';
import type { ActivityDeps } from './deps';
import { configuredServers } from './deploy';
import type { DeployActivities, ServingMeasurement } from '../workflows/api';

/**
 * The monitor activity: reads every model server's metrics (as data) for one model and returns
 * the window since the previous reading — requests, errors, p99 latency, online accuracy from
 * feedback, predicted classes and shadow agreement per version, summed over the servers. Each
 * server's window is taken before summing, so a server that restarted (its counters reset) counts
 * from zero instead of hiding behind the others.
 */

/** Per server URL: its cumulative counters at the previous reading. */
type Since = Record<string, MetricsSnapshot>;

export function createMonitorActivities(deps: ActivityDeps): Pick<DeployActivities, 'measureServing'> {
  return {
    async measureServing({ model, since }): Promise<ServingMeasurement> {
      const previous = (since ?? {}) as Since;
      const servers = configuredServers(deps);
      const readings = await Promise.all(
        servers.map(async (target) => {
          try {
            const snapshot = servingSnapshot(await new ServingClient(target, { timeoutMs: 5_000 }).metrics(), model);
            return { url: target.url, ok: true as const, snapshot };
          } catch (error) {
            return { url: target.url, ok: false as const, error: (error as Error).message };
          }
        }),
      );
      const windows: MetricsSnapshot[] = [];
      const snapshot: Since = {};
      for (const r of readings) {
        if (!r.ok) {
          // Unreachable now: keep its last reading, so its next window starts where this one would have.
          if (previous[r.url]) snapshot[r.url] = previous[r.url]!;
          continue;
        }
        snapshot[r.url] = r.snapshot;
        windows.push(previous[r.url] ? diffSnapshots(r.snapshot, previous[r.url]!) : r.snapshot);
      }
      const versions: Record<string, VersionWindow> = {};
      const shadow: Record<string, ShadowWindow> = {};
      if (windows.length) {
        for (const [version, stats] of Object.entries(windowStats(mergeSnapshots(windows)))) {
          versions[version] = versionWindow(stats);
          shadow[version] = shadowWindow(stats);
        }
      }
      return {
        takenAt: new Date().toISOString(),
        servers: readings.map((r) => (r.ok ? { url: r.url, ok: true } : { url: r.url, ok: false, error: r.error })),
        snapshot,
        versions,
        shadow,
      };
    },
  };
}
