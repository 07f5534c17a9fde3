import type { VersionPolicy } from './config';

/**
 * Which of the versions found on disk a model aspires to serve: the latest N (TF Serving's
 * default, N = 1), all of them, or a specific list (for pinning a rollback or a canary).
 */
export function aspiredVersions(policy: VersionPolicy, onDisk: readonly number[]): number[] {
  const sorted = [...onDisk].sort((a, b) => a - b);
  if ('all' in policy) return sorted;
  if ('specific' in policy) {
    const wanted = new Set(policy.specific.versions);
    return sorted.filter((v) => wanted.has(v));
  }
  return sorted.slice(Math.max(0, sorted.length - policy.latest.num_versions));
}

export function describePolicy(policy: VersionPolicy): string {
  if ('all' in policy) return 'all';
  if ('specific' in policy) return `specific ${policy.specific.versions.join(',')}`;
  return `latest ${policy.latest.num_versions}`;
}
