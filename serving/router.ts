import { createHash } from 'node:crypto';
import { ServingError } from './errors';
import type { VersionManager } from './manager';
import { labelledVersion } from './names';
import type { ServingState, Shadow, TrafficTarget } from './state';

/**
 * The router: which version answers a request. A named version or label wins; a request that
 * names neither follows the model's traffic split (weights over versions or labels), sticky when
 * it carries a client key — the key's stable hash picks the bucket, so the same key lands on the
 * same version for as long as the split stands. Without a split, the latest AVAILABLE version.
 * Targets that are not AVAILABLE drop out of the split and their weight goes to the others.
 */

export interface VersionChoice {
  version?: number;
  label?: string;
}

export type RouteReason = 'version' | 'label' | 'split' | 'latest';

/** A number in [0, 1) from a key, the same for the same (model, key) in every process. */
export function stableUnit(model: string, key: string): number {
  const digest = createHash('sha256').update(model).update('\0').update(key).digest();
  return digest.readUInt32BE(0) / 2 ** 32;
}

export class Router {
  constructor(
    private readonly manager: VersionManager,
    private readonly state: ServingState,
  ) {}

  private requireModel(model: string): void {
    if (!this.manager.hasModel(model))
      throw new ServingError('NOT_FOUND', `Servable not found for request: model "${model}" is not served here`);
  }

  /** The version a label points at (a number even when that version is not loaded). */
  labelVersion(model: string, label: string): number {
    const version = labelledVersion(this.manager.config(model)?.version_labels, label);
    if (version === undefined) throw new ServingError('NOT_FOUND', `model "${model}" has no version label "${label}"`);
    return version;
  }

  private resolveTarget(model: string, target: TrafficTarget | Shadow): number | undefined {
    if ('version' in target) return target.version;
    return labelledVersion(this.manager.config(model)?.version_labels, target.label);
  }

  pick(model: string, choice: VersionChoice, clientKey: string | undefined): { version: number; reason: RouteReason } {
    this.requireModel(model);
    const available = this.manager.availableVersions(model);
    if (choice.version !== undefined) {
      if (!available.includes(choice.version))
        throw this.notAvailable(model, choice.version, `version ${choice.version}`);
      return { version: choice.version, reason: 'version' };
    }
    if (choice.label !== undefined) {
      const version = this.labelVersion(model, choice.label);
      if (!available.includes(version))
        throw this.notAvailable(model, version, `label "${choice.label}" (version ${version})`);
      return { version, reason: 'label' };
    }
    const split = this.state.traffic(model)?.split;
    if (split) {
      const candidates = split
        .map((target) => ({ version: this.resolveTarget(model, target), weight: target.weight }))
        .filter(
          (c): c is { version: number; weight: number } =>
            c.version !== undefined && c.weight > 0 && available.includes(c.version),
        );
      const total = candidates.reduce((sum, c) => sum + c.weight, 0);
      if (total > 0) {
        let point = (clientKey !== undefined ? stableUnit(model, clientKey) : Math.random()) * total;
        for (const c of candidates) {
          point -= c.weight;
          if (point < 0) return { version: c.version, reason: 'split' };
        }
        return { version: candidates[candidates.length - 1]!.version, reason: 'split' };
      }
    }
    const latest = available[available.length - 1];
    if (latest === undefined) {
      const loading = this.manager.status(model).some((s) => s.state === 'LOADING' || s.state === 'START');
      throw new ServingError(
        loading ? 'UNAVAILABLE' : 'NOT_FOUND',
        `model "${model}" has no AVAILABLE version${loading ? ' yet (loading)' : ''}`,
      );
    }
    return { version: latest, reason: 'latest' };
  }

  private notAvailable(model: string, version: number, what: string): ServingError {
    const status = this.manager.status(model).find((s) => s.version === version);
    const state = status ? ` (state ${status.state}${status.error ? `: ${status.error}` : ''})` : '';
    return new ServingError(
      'NOT_FOUND',
      `Servable not found for request: ${what} of model "${model}" is not available${state}`,
    );
  }

  /** The shadow version for a request just served by `served`, if this request is copied. */
  shadow(model: string, served: number): number | undefined {
    const shadow = this.state.traffic(model)?.shadow;
    if (!shadow || shadow.percent <= 0 || Math.random() * 100 >= shadow.percent) return undefined;
    const version = this.resolveTarget(model, shadow);
    if (version === undefined || version === served) return undefined;
    return version;
  }
}
