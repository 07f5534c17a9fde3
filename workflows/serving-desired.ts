/**
 * The desired serving state of one model, as the registry holds it and the deploy activity
 * applies it to every model server: which versions are loaded, the labels, the traffic split over
 * versions and the shadow copy. Plain data and pure functions, shared by workflows and activities.
 */

export interface ServingLayout {
  /** Versions every server keeps loaded (its version policy: specific versions). */
  versions: number[];
  labels: Record<string, number>;
  /** Requests that name no version, by weight; null = the server's default (latest loaded). */
  split: { version: number; weight: number }[] | null;
  shadow: { version: number; percent: number } | null;
}

export interface DesiredServing extends ServingLayout {
  /** Bumped on every change, so an apply can tell which state it carried. */
  generation: number;
  /** Why this state, in words (shown by `gantry rollout status`). */
  note: string;
  since: string;
}

export interface ServerApply {
  url: string;
  ok: boolean;
  /** What had to change on this server (empty when it already served the desired state). */
  changed: string[];
  error?: string;
}

export interface ApplyReport {
  generation: number;
  servers: ServerApply[];
}

/** Production as usual: the champion alone takes all traffic. */
export function championOnly(champion: number, championAlias: string): ServingLayout {
  return {
    versions: [champion],
    labels: { [championAlias]: champion },
    split: [{ version: champion, weight: 100 }],
    shadow: null,
  };
}

/** A canary step: `percent` % of the traffic to the candidate, the rest to the champion (both loaded). */
export function canaryLayout(
  champion: number,
  candidate: number,
  percent: number,
  championAlias: string,
): ServingLayout {
  const split = [
    ...(percent < 100 ? [{ version: champion, weight: 100 - percent }] : []),
    { version: candidate, weight: percent },
  ];
  return {
    versions: [champion, candidate],
    labels: { [championAlias]: champion, canary: candidate },
    split,
    shadow: null,
  };
}

/** The shadow phase: the champion answers everything; a copy of `percent` % goes to the candidate. */
export function shadowLayout(
  champion: number,
  candidate: number,
  percent: number,
  championAlias: string,
): ServingLayout {
  return {
    versions: [champion, candidate],
    labels: { [championAlias]: champion, canary: candidate },
    split: [{ version: champion, weight: 100 }],
    shadow: { version: candidate, percent },
  };
}

/** An A/B experiment: the arms split the traffic by weight (sticky per client key on the server). */
export function armsLayout(
  arms: { version: number; weight: number }[],
  championAlias: string,
  champion: number | null,
): ServingLayout {
  const versions = [...new Set([...(champion !== null ? [champion] : []), ...arms.map((a) => a.version)])].sort(
    (a, b) => a - b,
  );
  return {
    versions,
    labels: champion !== null ? { [championAlias]: champion } : {},
    split: arms.map((a) => ({ ...a })),
    shadow: null,
  };
}

export function noVersions(): ServingLayout {
  return { versions: [], labels: {}, split: null, shadow: null };
}
