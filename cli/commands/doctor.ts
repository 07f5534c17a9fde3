import { stat } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { connectClient } from '../../control/connect';
import { gantryHome } from '../../control/home';
import { resolveTemporalBinary } from '../../control/temporal-binary';
import { temporalTargetFromEnv } from '../../control/temporal-env';
import { findRunningEmbeddedTemporal } from '../../control/embedded-temporal';
import { DEFAULT_FASHION_MNIST_DIR } from '../../data/sources';
import { selectBackend, type BackendReport } from '../../engine/backend';
import { SHARED_MEMORY_DIR, sharedMemoryAddon } from '../../collectives';
import { WORKFLOWS_PATH } from '../../workers/pool-worker';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/**
 * What this machine can run and why not: the TensorFlow.js backend that would be chosen (and
 * each faster one that is missing, with the reason), the collectives' same-host transport, the
 * Temporal server, the dataset.
 */
export async function doctorCommand(options: { json?: boolean }): Promise<void> {
  const home = gantryHome();
  const checks: Check[] = [];
  let backend: BackendReport | null = null;
  try {
    backend = await selectBackend();
    checks.push({
      name: 'backend',
      ok: true,
      detail:
        `${backend.name} (tfjs ${backend.tfjsVersion}, engine backend ` +
        `"${backend.engineBackend}"${backend.threads ? `, ${backend.threads} thread(s)` : ''})`,
    });
  } catch (error) {
    checks.push({ name: 'backend', ok: false, detail: (error as Error).message });
  }
  for (const missing of backend?.unavailable ?? [])
    checks.push({ name: `backend ${missing.name}`, ok: false, detail: missing.reason });
  if (backend) {
    const graph = backend.engineBackend === 'tensorflow';
    checks.push({
      name: 'graph execution',
      ok: graph,
      detail: graph
        ? 'training steps of Sequential models run as one TensorFlow graph each'
        : `needs the native backend; training steps run op by op on ${backend.name}`,
    });
  }

  const shared = sharedMemoryAddon();
  checks.push({
    name: 'shared-memory all-reduce',
    ok: 'addon' in shared,
    detail:
      'addon' in shared
        ? `trainers on one host all-reduce through ${SHARED_MEMORY_DIR}`
        : `${shared.unavailable}; trainers all-reduce over TCP`,
  });

  try {
    const target = temporalTargetFromEnv();
    if (target)
      checks.push({
        name: 'temporal',
        ok: true,
        detail: `TEMPORAL_ADDRESS ${target.address} (namespace ${target.namespace})`,
      });
    else {
      const binary = resolveTemporalBinary();
      const running = await findRunningEmbeddedTemporal(home);
      checks.push({
        name: 'temporal',
        ok: true,
        detail:
          `embedded: ${binary.path} (${binary.origin})` +
          `${running ? `, running at ${running.address}` : ', not running (start it with `gantry dev`)'}`,
      });
    }
  } catch (error) {
    checks.push({ name: 'temporal', ok: false, detail: (error as Error).message });
  }

  checks.push(...(await replayCheck()));

  const dataset = await stat(DEFAULT_FASHION_MNIST_DIR).then(
    () => true,
    () => false,
  );
  checks.push({
    name: 'fashion-mnist',
    ok: dataset,
    detail: dataset
      ? DEFAULT_FASHION_MNIST_DIR
      : `${DEFAULT_FASHION_MNIST_DIR} is missing: apt-get install dataset-fashion-mnist`,
  });
  checks.push({ name: 'state folder', ok: true, detail: home.root });

  if (options.json) {
    console.log(JSON.stringify({ backend, checks }));
    return;
  }
  for (const c of checks) console.log(`${c.ok ? 'ok     ' : 'missing'} ${c.name.padEnd(22)} ${c.detail}`);
}

/** The workflow types Gantry's control and train pools run (workflows/index.ts). */
export const GANTRY_WORKFLOW_TYPES = [
  'registryWorkflow',
  'rolloutWorkflow',
  'experimentWorkflow',
  'retrainWorkflow',
  'trainJobWorkflow',
  'importModelWorkflow',
];

export interface UnreplayableWorkflow {
  workflowId: string;
  runId: string;
  workflowType: string;
  error: string;
}

export interface ReplayReport {
  /** Running workflows whose histories were replayed. */
  checked: number;
  /** Running workflows past `limit`, not checked. */
  skipped: number;
  /** Set when the check stopped at its deadline: the workflows not yet replayed are not counted. */
  timedOut: boolean;
  unreplayable: UnreplayableWorkflow[];
}

/**
 * Which running workflows (of `workflowTypes`) the code in `bundle` can no longer replay: each one's history is
 * fetched and replayed in this process, as a worker of that code would on its next task. Bounded: at most `limit`
 * workflows, histories of at most `maxEvents` events (longer ones count as checked by none: skipped), and
 * `timeoutMs` in all.
 */
export async function findUnreplayable(options: {
  client: Client;
  bundle: WorkflowBundleOption;
  workflowTypes?: string[];
  limit?: number;
  maxEvents?: number;
  timeoutMs?: number;
}): Promise<ReplayReport> {
  const types = new Set(options.workflowTypes ?? GANTRY_WORKFLOW_TYPES);
  const limit = options.limit ?? 50;
  const maxEvents = options.maxEvents ?? 50_000;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  const report: ReplayReport = { checked: 0, skipped: 0, timedOut: false, unreplayable: [] };
  const running: { workflowId: string; runId: string; type: string; events: number }[] = [];
  for await (const w of options.client.workflow.list({ query: 'ExecutionStatus="Running"' })) {
    if (!types.has(w.type)) continue;
    if (running.length >= limit || w.historyLength > maxEvents) report.skipped++;
    else running.push({ workflowId: w.workflowId, runId: w.runId, type: w.type, events: w.historyLength });
    if (Date.now() > deadline) break;
  }
  if (!running.length) return report;
  const byId = new Map(running.map((w) => [w.workflowId, w]));
  async function* histories() {
    for (const w of running) {
      if (Date.now() > deadline) {
        report.timedOut = true;
        return;
      }
      const history = await options.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
      yield { workflowId: w.workflowId, history };
    }
  }
  const results = Worker.runReplayHistories(
    { workflowBundle: options.bundle, replayName: 'gantry-doctor' },
    histories(),
  );
  for await (const result of results) {
    report.checked++;
    const w = byId.get(result.workflowId)!;
    if (result.error)
      report.unreplayable.push({
        workflowId: w.workflowId,
        runId: w.runId,
        workflowType: w.type,
        error: result.error.message.slice(0, 500),
      });
  }
  return report;
}

/** What to do about workflows this build cannot replay: the advice `gantry doctor` prints with them. */
export const UNREPLAYABLE_ADVICE =
  'an earlier build started them and this build changed their workflow code without a `patched()` marker: ' +
  'their next workflow task fails (and retries) until a worker of the earlier build takes it. Fix this build ' +
  "(the change behind `if (patched('<id>'))`, see workflows/index.ts) and deploy it; or run the earlier build's " +
  'workers (`gantry worker` from it, same task queues) until these close — a rollout or an experiment ends by ' +
  'itself (`gantry experiment stop <model>` ends one now), a registry hands its state to a new run when its ' +
  'history passes its limit. A rollout or experiment may instead be terminated (`temporal workflow terminate ' +
  '--workflow-id <id>`) and started again with this build; never terminate a registry: its versions and ' +
  'aliases live in its state.';

/** The doctor's line about running workflows, when a Temporal server is reachable. */
async function replayCheck(): Promise<Check[]> {
  let connected: Awaited<ReturnType<typeof connectClient>>;
  try {
    connected = await connectClient();
  } catch {
    return [];
  }
  try {
    const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
    const report = await findUnreplayable({ client: connected.client, bundle: { code } });
    const counted =
      `${report.checked} running workflow(s) replayed with this build's code` +
      (report.skipped ? `, ${report.skipped} not checked (over the limit of 50 or too long)` : '') +
      (report.timedOut ? ', stopped at the 60 s deadline' : '');
    if (!report.unreplayable.length) return [{ name: 'workflow replay', ok: true, detail: counted }];
    return [
      {
        name: 'workflow replay',
        ok: false,
        detail: `${report.unreplayable.length} of ${counted} cannot be replayed: ${UNREPLAYABLE_ADVICE}`,
      },
      ...report.unreplayable.map((w) => ({
        name: `  ${w.workflowType}`,
        ok: false,
        detail: `${w.workflowId} (run ${w.runId}): ${w.error}`,
      })),
    ];
  } catch (error) {
    return [{ name: 'workflow replay', ok: false, detail: `could not check: ${(error as Error).message}` }];
  } finally {
    await connected.connection.close();
  }
}

const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error };
