import v8 from 'node:v8';

/**
 * Preloaded into bench/soak.ts's model server (`node --expose-gc --import <tsx> --import bench/soak-probe.ts
 * cli/main.ts serve …`): on the bench's IPC message it forces a full garbage collection and answers with the
 * process's memory, so start, plateau and end compare live memory, not garbage that happened to be collected
 * or not. Optionally it writes a heap snapshot (node:v8) for a closer look. Nothing of this is in `gantry serve`.
 */

export interface ProbeRequest {
  type: 'sample';
  /** Where to write a heap snapshot after the collection (slow: seconds for a 100 MB heap), if anywhere. */
  heapSnapshot?: string;
}

export interface ProbeSample {
  type: 'sample';
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  /** Timers and immediates pending: a per-version leak of them grows with the swaps. */
  timers: number;
  /** How long the forced collections paused the server. */
  gcMs: number;
  heapSnapshot?: string;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (process.send && gc) {
  process.on('message', (message: ProbeRequest) => {
    if (message?.type !== 'sample') return;
    const started = performance.now();
    // Twice: objects freed by the first collection's finalizers (weak references, FinalizationRegistry) go now.
    gc();
    gc();
    const gcMs = performance.now() - started;
    const memory = process.memoryUsage();
    const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'Immediate').length;
    const heapSnapshot = message.heapSnapshot ? v8.writeHeapSnapshot(message.heapSnapshot) : undefined;
    const sample: ProbeSample = {
      type: 'sample',
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      externalBytes: memory.external,
      timers,
      gcMs,
      ...(heapSnapshot ? { heapSnapshot } : {}),
    };
    process.send!(sample);
  });
  // The IPC channel must not keep a server alive that would otherwise exit.
  process.channel?.unref();
}
