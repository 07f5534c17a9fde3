import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineUpdate,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

/**
 * The model registry: one long-lived entity workflow per model name (id `<prefix>-registry:<model>`, see
 * activities/registry-client.ts),
 * holding every version with its lineage and the aliases that point at them. Its state lives in
 * its history alone; it continues as new before the history grows large.
 */

export interface VersionLineage {
  runId: string;
  datasetFingerprint: string;
  /** The whole pipeline spec the version was trained from. */
  spec: unknown;
  parentVersion: number | null;
  gitCommit: string | null;
  backend: string;
}

export interface ModelVersion {
  version: number;
  artifactUri: string;
  metrics: { testAccuracy: number; testLoss: number; perClassAccuracy: number[] };
  lineage: VersionLineage;
  blessed: boolean;
  reasons: string[];
  status: 'registered' | 'published';
  /** Where the model repository holds it, once published. */
  publishedPath: string | null;
  registeredAt: string;
  publishedAt: string | null;
}

export interface RegistryState {
  model: string;
  versions: ModelVersion[];
  aliases: Record<string, number>;
  /** Which version each run registered: a retried register activity gets the same answer. */
  versionByRunId: Record<string, number>;
}

export interface RegisterRequest {
  artifactUri: string;
  metrics: ModelVersion['metrics'];
  lineage: VersionLineage;
  blessed: boolean;
  reasons: string[];
}

export interface PublishRequest {
  version: number;
  publishedPath: string;
  alias: string;
}

export const registerVersionUpdate = defineUpdate<{ version: number }, [RegisterRequest]>('registerVersion');
export const publishVersionUpdate = defineUpdate<{ version: number; alias: string; previous: number | null }, [PublishRequest]>('publishVersion');
export const setAliasUpdate = defineUpdate<{ alias: string; version: number; previous: number | null }, [{ alias: string; version: number }]>('setAlias');
export const registryStateQuery = defineQuery<RegistryState>('state');
export const versionsQuery = defineQuery<ModelVersion[]>('versions');
export const aliasesQuery = defineQuery<Record<string, number>>('aliases');

export interface RegistryInput {
  model: string;
  /** Carried over by continue-as-new. */
  state?: RegistryState;
  /** Continue as new beyond this many history events (Temporal also suggests it on its own). */
  maxHistoryEvents?: number;
}

export async function registryWorkflow(input: RegistryInput): Promise<void> {
  const state: RegistryState = input.state ?? { model: input.model, versions: [], aliases: {}, versionByRunId: {} };
  const maxHistoryEvents = input.maxHistoryEvents ?? 10_000;
  const now = () => new Date(Date.now()).toISOString(); // workflow time: deterministic on replay

  const findVersion = (version: number): ModelVersion => {
    const found = state.versions.find((v) => v.version === version);
    if (!found) {
      throw ApplicationFailure.nonRetryable(
        `model "${state.model}" has no version ${version} (versions: ${state.versions.map((v) => v.version).join(', ') || 'none'})`,
        'UnknownVersion',
      );
    }
    return found;
  };
  const moveAlias = (alias: string, version: number) => {
    const previous = state.aliases[alias] ?? null;
    state.aliases[alias] = version;
    return previous;
  };

  setHandler(registryStateQuery, () => state);
  setHandler(versionsQuery, () => state.versions);
  setHandler(aliasesQuery, () => state.aliases);

  setHandler(registerVersionUpdate, (request) => {
    const existing = state.versionByRunId[request.lineage.runId];
    if (existing !== undefined) return { version: existing };
    const version = (state.versions.at(-1)?.version ?? 0) + 1;
    state.versions.push({
      version,
      artifactUri: request.artifactUri,
      metrics: request.metrics,
      lineage: request.lineage,
      blessed: request.blessed,
      reasons: request.reasons,
      status: 'registered',
      publishedPath: null,
      registeredAt: now(),
      publishedAt: null,
    });
    state.versionByRunId[request.lineage.runId] = version;
    return { version };
  });

  setHandler(
    publishVersionUpdate,
    (request) => {
      const entry = findVersion(request.version);
      if (entry.status !== 'published') {
        entry.status = 'published';
        entry.publishedPath = request.publishedPath;
        entry.publishedAt = now();
      }
      return { version: request.version, alias: request.alias, previous: moveAlias(request.alias, request.version) };
    },
    {
      validator: (request) => {
        const entry = findVersion(request.version);
        if (!entry.blessed) {
          throw new Error(`version ${request.version} of "${state.model}" is not blessed and cannot be published`);
        }
      },
    },
  );

  setHandler(
    setAliasUpdate,
    ({ alias, version }) => ({ alias, version, previous: moveAlias(alias, version) }),
    {
      validator: ({ alias, version }) => {
        if (!/^[A-Za-z0-9_-]+$/.test(alias)) throw new Error(`alias "${alias}" must match [A-Za-z0-9_-]+`);
        if (findVersion(version).status !== 'published') {
          throw new Error(`version ${version} of "${state.model}" is not published; only published versions can carry an alias`);
        }
      },
    },
  );

  // An entity workflow never finishes; it only hands its state to a fresh run when its history
  // would otherwise grow past what Temporal replays cheaply.
  await condition(() => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxHistoryEvents);
  await condition(allHandlersFinished);
  await continueAsNew<typeof registryWorkflow>({ model: input.model, state, maxHistoryEvents });
}
