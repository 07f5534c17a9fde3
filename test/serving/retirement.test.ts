import { describe, expect, it } from 'vitest';
import { FeedbackStore } from '../../serving/feedback';
import { RETIRED_VERSIONS_KEPT, VersionManager } from '../../serving/manager';
import { ServingMetrics } from '../../serving/metrics';
import { FakeLoader, modelConfig, RecordingLogger, rowsOf, snapshot, UNBATCHED } from './fakes';

/**
 * What a hot swap leaves behind. Every version that served requests has its own metric series (latency and
 * batch histograms, request, class and feedback counters) and feedback windows; a server that swaps versions
 * all day must not keep them all. The manager keeps those of the newest RETIRED_VERSIONS_KEPT unloaded versions
 * and forgets older ones, so the registry plateaus however many swaps there were (bench/soak.ts shows it under
 * load; these tests count the series).
 */

const model = modelConfig('m');
const settle = () => new Promise((resolve) => setImmediate(resolve));

function serverParts() {
  const metrics = new ServingMetrics();
  const feedback = new FeedbackStore(metrics, 100, 1000);
  const loader = new FakeLoader();
  const manager = new VersionManager({
    load: { warmup: false },
    batching: UNBATCHED,
    metrics,
    log: new RecordingLogger(),
    loadServable: loader.load,
    forgetVersion: (name, version) => feedback.forgetVersion(name, version),
  });
  return { metrics, feedback, loader, manager };
}
type Parts = ReturnType<typeof serverParts>;

/** The versions of model m that have at least one series in the registry, ascending. */
async function versionsWithSeries(metrics: ServingMetrics): Promise<number[]> {
  const versions = new Set<number>();
  for (const family of await metrics.json())
    for (const { labels } of family.values)
      if (labels.model === 'm' && typeof labels.version === 'string' && labels.version !== '')
        versions.add(Number(labels.version));
  return [...versions].sort((a, b) => a - b);
}

/** Series of model m (the process's own default metrics come and go with its GC kinds). */
async function seriesCount(metrics: ServingMetrics): Promise<number> {
  return (await metrics.json()).reduce(
    (sum, family) => sum + family.values.filter((s) => s.labels.model === 'm').length,
    0,
  );
}

/** Makes `versions` the aspired ones and waits until the others unloaded. */
async function aspire({ manager }: Parts, ...versions: number[]): Promise<void> {
  await manager.apply([snapshot(model, versions)]);
  await settle();
  expect(manager.availableVersions('m')).toEqual([...versions].sort((a, b) => a - b));
}

/**
 * One request on `version` as the server makes it: through its batcher (batch and queue histograms), counted,
 * remembered for feedback; the `${tag}-a` prediction is labelled at once, `${tag}-b` is left awaiting its label.
 */
function serve({ manager, metrics, feedback }: Parts, version: number, tag: string): void {
  const handle = manager.acquire('m', version)!;
  try {
    handle.batcher.submit(rowsOf(1));
  } finally {
    handle.release();
  }
  const labels = { model: 'm', version: String(version), api: 'predict' as const, protocol: 'rest' as const };
  metrics.requests.inc({ ...labels, status: 'OK', route: 'routed' });
  metrics.latency.observe({ ...labels, route: 'routed' }, 0.001);
  feedback.remember(`${tag}-a`, 'm', version, Int32Array.of(1));
  feedback.remember(`${tag}-b`, 'm', version, Int32Array.of(1));
  expect(feedback.record('m', { feedback: [{ request_id: `${tag}-a`, labels: 1 }] }).accepted).toBe(1);
}

describe('retired versions', () => {
  it('keeps the series and feedback of the newest retired versions only, however many swaps', async () => {
    const parts = serverParts();
    const { metrics, feedback } = parts;
    const swaps = 40;
    let plateau = 0;
    for (let v = 1; v <= swaps; v++) {
      await aspire(parts, v);
      serve(parts, v, `v${v}`);
      if (v === 2 * RETIRED_VERSIONS_KEPT) plateau = await seriesCount(metrics);
    }
    // The serving version and the newest retired ones; nothing of the 35 before them.
    const kept = Array.from({ length: RETIRED_VERSIONS_KEPT + 1 }, (_, i) => swaps - RETIRED_VERSIONS_KEPT + i);
    expect(await versionsWithSeries(metrics)).toEqual(kept);
    expect(await seriesCount(metrics)).toBe(plateau);
    // A forgotten version's feedback windows are gone, and so are its predictions awaiting labels: their
    // feedback is answered as an unknown id (as an evicted one's is) instead of bringing the series back.
    expect(feedback.remembered).toBe(kept.length);
    expect(feedback.accuracy('m', kept[0]! - 1)).toBeUndefined();
    expect(feedback.accuracy('m', kept[0]!)).toEqual({ accuracy: 1, samples: 1 });
    const late = feedback.record('m', {
      feedback: [
        { request_id: `v${kept[0]! - 1}-b`, labels: 1 },
        { request_id: `v${kept[0]}-b`, labels: 0 },
      ],
    });
    expect(late).toMatchObject({ accepted: 1, unknown_request_ids: [`v${kept[0]! - 1}-b`] });
    expect(await versionsWithSeries(metrics)).toEqual(kept);
    expect(feedback.accuracy('m', kept[0]!)).toEqual({ accuracy: 0.5, samples: 2 });
  });

  it('keeps counting a retired version that serves again, and forgets it only once retired long enough', async () => {
    const parts = serverParts();
    const { metrics } = parts;
    const requestsOf = async (version: number) =>
      (await metrics.json())
        .find((family) => family.name === 'gantry_serving_requests_total')!
        .values.filter((s) => s.labels.version === String(version))
        .reduce((sum, s) => sum + s.value, 0);
    await aspire(parts, 1);
    serve(parts, 1, 'first');
    await aspire(parts, 2);
    // A rollback to version 1 while its series are still kept: its counter goes on from where it was.
    await aspire(parts, 1, 2);
    serve(parts, 1, 'again');
    expect(await requestsOf(1)).toBe(2);
    // Many versions come and go beside it: version 1 serves throughout, so it is never forgotten.
    for (let v = 3; v <= 12; v++) {
      await aspire(parts, 1, v);
      serve(parts, v, `v${v}`);
    }
    expect(await versionsWithSeries(metrics)).toEqual([1, 8, 9, 10, 11, 12]);
    expect(await requestsOf(1)).toBe(2);
    // Retired at last: kept while RETIRED_VERSIONS_KEPT - 1 newer versions retire, forgotten at the next.
    await aspire(parts, 12);
    for (let v = 13; v < 13 + RETIRED_VERSIONS_KEPT - 1; v++) await aspire(parts, v);
    expect(await versionsWithSeries(metrics)).toContain(1);
    await aspire(parts, 13 + RETIRED_VERSIONS_KEPT - 1);
    expect(await versionsWithSeries(metrics)).not.toContain(1);
    expect(await requestsOf(1)).toBe(0);
  });
});
