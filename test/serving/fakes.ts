import type { BatchingOptions, ModelConfig } from '../../serving/config';
import type { Servable } from '../../serving/loader';
import type { Logger } from '../../serving/log';
import { VersionManager } from '../../serving/manager';
import { ServingMetrics } from '../../serving/metrics';
import type { AspiredVersion, ModelSnapshot } from '../../serving/source';
import type { DenseTensor } from '../../serving/tensors';

/**
 * In-memory stand-ins for the serving core's unit tests: a loader that loads nothing from disk
 * and runs no TensorFlow, so a test decides when each load finishes or fails, and sees every
 * model call and every dispose in the order they happened.
 */

export const UNBATCHED: BatchingOptions = {
  enabled: false,
  max_batch_size: 64,
  batch_timeout_micros: 0,
  max_enqueued_batches: 64,
};

/** A one-input, one-output tensor of `rows` rows, each row one value. */
export function rowsOf(...values: number[]): DenseTensor[] {
  return [{ dtype: 'float32', shape: [values.length, 1], data: Float32Array.from(values) }];
}

export function valuesOf(outputs: DenseTensor[]): number[] {
  return [...outputs[0]!.data];
}

/** A servable whose model call adds `version × 1000` to each row, and records each call. */
export function fakeServable(version: number, events: string[], calls?: number[][]): Servable {
  return {
    signature: { name: 'serving_default', methodName: 'tensorflow/serving/predict', inputs: [], outputs: [] },
    metadata: {},
    weightBytes: 4,
    execution: { mode: 'graph' },
    run(inputs) {
      const rows = [...inputs[0]!.data];
      calls?.push(rows);
      return rowsOf(...rows.map((x) => x + version * 1000));
    },
    dispose() {
      events.push(`dispose ${version}`);
    },
  };
}

interface PendingLoad {
  path: string;
  resolve(): void;
  reject(error: Error): void;
}

/**
 * A loader the test drives: `auto` loads finish at once; otherwise each load waits in `pending`
 * until the test resolves or rejects it. The version is the path's last segment.
 */
export class FakeLoader {
  readonly events: string[] = [];
  readonly calls = new Map<number, number[][]>();
  readonly pending: PendingLoad[] = [];
  auto = true;
  /** Versions whose next loads fail with this message. */
  readonly failures = new Map<number, string>();

  readonly load = (path: string): Promise<Servable> => {
    const version = Number(path.split('/').pop());
    this.events.push(`load ${version}`);
    const servable = () => {
      const failure = this.failures.get(version);
      if (failure !== undefined) throw new Error(failure);
      const calls: number[][] = [];
      this.calls.set(version, calls);
      return fakeServable(version, this.events, calls);
    };
    if (this.auto) return Promise.resolve().then(servable);
    return new Promise((resolve, reject) =>
      this.pending.push({
        path,
        resolve: () => {
          try {
            resolve(servable());
          } catch (error) {
            reject(error);
          }
        },
        reject,
      }),
    );
  };
}

/** The log lines a manager wrote, to follow a version's state changes. */
export class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  info(message: string): void {
    this.lines.push(message);
  }
  warn(message: string): void {
    this.lines.push(message);
  }
  error(message: string): void {
    this.lines.push(message);
  }
}

export function managerWith(loader: FakeLoader, batching: BatchingOptions = UNBATCHED, log = new RecordingLogger()) {
  const manager = new VersionManager({
    load: { warmup: false },
    batching,
    metrics: new ServingMetrics(),
    log,
    loadServable: loader.load,
  });
  return { manager, log };
}

export function modelConfig(name: string, labels: Record<string, number> = {}): ModelConfig {
  return {
    name,
    base_path: `/models/${name}`,
    model_version_policy: { all: {} },
    version_labels: labels,
  };
}

/** One poll of a source that finds `versions` of `config` (fingerprint `f<version>` unless given). */
export function snapshot(config: ModelConfig, versions: (number | AspiredVersion)[]): ModelSnapshot {
  return {
    config,
    versions: versions.map((v) =>
      typeof v === 'number' ? { version: v, path: `${config.base_path}/${v}`, fingerprint: `f${v}` } : v,
    ),
  };
}
