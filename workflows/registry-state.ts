import type {
  ClaimTrafficRequest,
  ConcludeRequest,
  ModelVersion,
  PromoteRequest,
  PublishRequest,
  PublishResult,
  RecordEventRequest,
  RegisterRequest,
  RegistryEvent,
  RegistryState,
  ReleaseTrafficRequest,
  RollbackRequest,
  SetServingRequest,
  TrafficOwner,
} from './api';
import { championOnly, noVersions, type ApplyReport, type DesiredServing, type ServingLayout } from './serving-desired';

/**
 * The model registry's state and its transitions, as plain data and plain methods (after Temporal's
 * safe-message-handlers sample): the registry workflow wires its update handlers to them and
 * applies the desired serving state they produce. Nothing here awaits or talks to Temporal, so a
 * test drives it directly. Validators (`check*`) throw to refuse a request and change nothing; the
 * transitions assume their validator passed.
 */

/** The registry's state with every field present (continued runs may carry an older, partial one). */
export type CompleteRegistryState = Required<RegistryState>;

/** How many decisions the state keeps; the workflow history has them all. */
export const MAX_EVENTS = 200;

/** A version the registry does not hold. */
export class UnknownVersion extends Error {}

/** Fills in what a state from an older run lacks; a new model starts empty. */
export function completeRegistryState(model: string, state?: RegistryState): CompleteRegistryState {
  return {
    model: state?.model ?? model,
    versions: state?.versions ?? [],
    aliases: state?.aliases ?? {},
    versionByRunId: state?.versionByRunId ?? {},
    championAlias: state?.championAlias ?? 'champion',
    championHistory: state?.championHistory ?? [],
    serving: state?.serving ?? null,
    lastApply: state?.lastApply ?? null,
    trafficOwner: state?.trafficOwner ?? null,
    events: state?.events ?? [],
  };
}

export class ModelRegistry {
  readonly state: CompleteRegistryState;

  /** `now` gives the time to stamp changes with (the workflow's clock, deterministic on replay). */
  constructor(
    model: string,
    state: RegistryState | undefined,
    private readonly now: () => string,
  ) {
    this.state = completeRegistryState(model, state);
  }

  champion(): number | null {
    return this.state.aliases[this.state.championAlias] ?? null;
  }

  version(version: number): ModelVersion {
    const found = this.state.versions.find((v) => v.version === version);
    if (!found) {
      const known = this.state.versions.map((v) => v.version).join(', ') || 'none';
      throw new UnknownVersion(`model "${this.state.model}" has no version ${version} (versions: ${known})`);
    }
    return found;
  }

  // ---- versions ----

  /** Adds the next version; a run that registered before (a retried activity) gets its version back. */
  register(request: RegisterRequest): { version: number } {
    const existing = this.state.versionByRunId[request.lineage.runId];
    if (existing !== undefined) return { version: existing };
    const version = (this.state.versions.at(-1)?.version ?? 0) + 1;
    this.state.versions.push({
      version,
      artifactUri: request.artifactUri,
      metrics: request.metrics,
      lineage: request.lineage,
      blessed: request.blessed,
      reasons: request.reasons,
      status: 'registered',
      rolledBack: null,
      publishedPath: null,
      registeredAt: this.now(),
      publishedAt: null,
    });
    this.state.versionByRunId[request.lineage.runId] = version;
    return { version };
  }

  checkPublish(request: PublishRequest): void {
    const entry = this.version(request.version);
    if (!entry.blessed) {
      throw new Error(`version ${request.version} of "${this.state.model}" is not blessed and cannot be published`);
    }
    if (request.alias === this.state.championAlias) this.checkOwner(undefined, 'publish');
  }

  /** Marks the version published and moves the alias; `desired` is set when the champion moved. */
  publish(request: PublishRequest): { result: PublishResult; desired: DesiredServing | null } {
    const entry = this.version(request.version);
    if (entry.status !== 'published') {
      entry.status = 'published';
      entry.publishedPath = request.publishedPath;
      entry.publishedAt = this.now();
      this.record({
        kind: 'published',
        version: request.version,
        by: 'pipeline',
        message: `v${request.version} published to ${request.publishedPath}`,
      });
    }
    if (request.alias === null)
      return { result: { version: request.version, alias: null, previous: null }, desired: null };
    if (request.alias === this.state.championAlias && this.champion() === request.version) {
      return { result: { version: request.version, alias: request.alias, previous: request.version }, desired: null };
    }
    const previous = this.moveAlias(request.alias, request.version);
    let desired: DesiredServing | null = null;
    if (request.alias === this.state.championAlias) {
      this.record({
        kind: 'promoted',
        version: request.version,
        by: 'pipeline',
        message: `v${request.version} is the champion (published without a rollout)`,
      });
      desired = this.desire(this.championLayout(request.version), `champion v${request.version}`);
    }
    return { result: { version: request.version, alias: request.alias, previous }, desired };
  }

  // ---- the champion ----

  checkPromote({ version, owner }: PromoteRequest): void {
    this.requirePublished(version);
    this.checkOwner(owner, 'promote');
  }

  promote({ version, reason, owner }: PromoteRequest): DesiredServing {
    this.version(version).rolledBack = null;
    this.moveAlias(this.state.championAlias, version);
    this.record({
      kind: 'promoted',
      version,
      by: owner ?? 'manual',
      message: `v${version} promoted to ${this.state.championAlias}${reason ? `: ${reason}` : ''}`,
    });
    return this.desire(this.championLayout(version), `champion v${version} (promoted)`);
  }

  checkRollback({ to, owner }: RollbackRequest): void {
    this.checkOwner(owner, 'rollback');
    this.requirePublished(this.rollbackTarget(to));
    const current = this.champion();
    if (to !== undefined && current !== null && to >= current) {
      throw new Error(
        `rollback --to ${to}: only an earlier version than the champion v${current} (use promote to move forward)`,
      );
    }
  }

  /** Moves the champion back; `rolledBack` is the champion it replaced. */
  rollback({ to, reason, owner }: RollbackRequest): { desired: DesiredServing; rolledBack: number | null } {
    const target = this.rollbackTarget(to);
    const current = this.champion();
    const reasons = [reason ?? 'manual rollback'];
    if (current !== null && current !== target) this.version(current).rolledBack = { at: this.now(), reasons };
    this.version(target).rolledBack = null;
    this.moveAlias(this.state.championAlias, target);
    this.record({
      kind: 'rolled-back',
      version: current,
      by: owner ?? 'manual',
      message: `rolled back from v${current ?? '-'} to v${target}: ${reasons.join('; ')}`,
    });
    const desired = this.desire(
      this.championLayout(target),
      `champion v${target} (rolled back from v${current ?? '-'})`,
    );
    return { desired, rolledBack: current };
  }

  // ---- who steers the traffic: one rollout or experiment at a time ----

  checkClaimTraffic({ owner, version }: ClaimTrafficRequest): void {
    const holder = this.state.trafficOwner;
    if (holder && holder.id !== owner) {
      throw new Error(
        `the ${holder.kind} ${holder.id} (version ${holder.version ?? '-'}) already steers ` +
          `"${this.state.model}"'s traffic since ${holder.since}; two never run at once`,
      );
    }
    if (version !== null) this.requirePublished(version);
  }

  /** Idempotent for the holder (a retried activity). */
  claimTraffic({ owner, kind, version }: ClaimTrafficRequest): TrafficOwner {
    if (this.state.trafficOwner?.id === owner) return this.state.trafficOwner;
    const claimed: TrafficOwner = { id: owner, kind, version, since: this.now() };
    this.state.trafficOwner = claimed;
    this.record({
      kind,
      version,
      by: owner,
      message: `${kind} ${owner} took "${this.state.model}"'s traffic`,
    });
    return claimed;
  }

  /** The holder hands the traffic back and the champion alone serves again; anyone else changes nothing. */
  releaseTraffic({ owner, note }: ReleaseTrafficRequest): DesiredServing | null {
    if (this.state.trafficOwner?.id !== owner) return null;
    this.state.trafficOwner = null;
    const champion = this.champion();
    if (champion === null) return null;
    return this.desire(this.championLayout(champion), note ?? `champion v${champion} (traffic released by ${owner})`);
  }

  checkSetServing({ owner, layout }: SetServingRequest): void {
    this.checkOwner(owner, 'set serving');
    for (const version of layout.versions) this.requirePublished(version);
  }

  setServing({ layout, note }: SetServingRequest): DesiredServing {
    return this.desire(layout, note);
  }

  checkConclude({ owner, candidate }: ConcludeRequest): void {
    this.checkOwner(owner, 'conclude');
    this.requirePublished(candidate);
  }

  /** A rollout's outcome: the candidate becomes the champion or is marked rolled back; the traffic is released. */
  conclude({ owner, candidate, outcome, reasons, details }: ConcludeRequest): DesiredServing {
    const entry = this.version(candidate);
    if (outcome === 'promoted') {
      entry.rolledBack = null;
      this.moveAlias(this.state.championAlias, candidate);
    } else {
      entry.rolledBack = { at: this.now(), reasons };
    }
    this.record({
      kind: outcome === 'promoted' ? 'promoted' : 'rolled-back',
      version: candidate,
      by: owner,
      message: `v${candidate} ${outcome}: ${reasons.join('; ')}`,
      details,
    });
    this.state.trafficOwner = null;
    const current = this.champion();
    // Nothing was ever promoted: serve nothing rather than a rolled-back candidate.
    if (current === null) return this.desire(noVersions(), `v${candidate} rolled back; no champion`);
    return this.desire(
      this.championLayout(current),
      outcome === 'promoted'
        ? `champion v${candidate} (rollout promoted it)`
        : `champion v${current} (v${candidate} rolled back)`,
    );
  }

  recordEvent({ owner, kind, version, message, details }: RecordEventRequest): void {
    this.record({ kind, version, by: owner, message, details });
  }

  // ---- the desired serving state ----

  /** Records a new desired serving state, one generation after the last. */
  desire(layout: ServingLayout, note: string): DesiredServing {
    const generation = (this.state.serving?.generation ?? 0) + 1;
    const desired: DesiredServing = { ...layout, generation, note, since: this.now() };
    this.state.serving = desired;
    return desired;
  }

  applied(report: ApplyReport): void {
    this.state.lastApply = report;
  }

  // ---- helpers ----

  private requirePublished(version: number): ModelVersion {
    const entry = this.version(version);
    if (entry.status !== 'published')
      throw new Error(`version ${version} of "${this.state.model}" is not published (it is ${entry.status})`);
    return entry;
  }

  /** Only the workflow that claimed the model's traffic may steer it while it holds it. */
  private checkOwner(owner: string | undefined, what: string): void {
    const holder = this.state.trafficOwner;
    if (holder && holder.id !== owner) {
      throw new Error(
        `${what}: the ${holder.kind} ${holder.id} (version ${holder.version ?? '-'}) steers ` +
          `"${this.state.model}"'s traffic since ${holder.since}; send it to that ${holder.kind} or stop it first`,
      );
    }
    if (owner !== undefined && (!holder || holder.id !== owner))
      throw new Error(`${what}: ${owner} does not hold "${this.state.model}"'s traffic`);
  }

  /** The named version, or the last earlier champion that was not rolled back. */
  private rollbackTarget(to: number | undefined): number {
    if (to !== undefined) return to;
    const current = this.champion();
    const previous = [...this.state.championHistory]
      .reverse()
      .find((v) => v !== current && !this.version(v).rolledBack);
    if (previous === undefined)
      throw new Error(`model "${this.state.model}" has no earlier champion to roll back to; name a version with --to`);
    return previous;
  }

  private moveAlias(alias: string, version: number): number | null {
    const previous = this.state.aliases[alias] ?? null;
    this.state.aliases[alias] = version;
    if (alias === this.state.championAlias && previous !== null && previous !== version)
      this.state.championHistory.push(previous);
    return previous;
  }

  private championLayout(champion: number): ServingLayout {
    return championOnly(champion, this.state.championAlias);
  }

  private record(event: Omit<RegistryEvent, 'at'>): void {
    const { events } = this.state;
    events.push({ at: this.now(), ...event });
    if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
  }
}
