import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { readRegistry } from './registry';
import { deploymentPrefix, taskQueueOf } from './task-queues';
import {
  experimentStatusQuery,
  experimentWorkflowId,
  jobStateQuery,
  modelOfRegistryWorkflowId,
  progressQuery,
  REGISTRY_WORKFLOW_TYPE,
  registryWorkflowId,
  rolloutStatusQuery,
  rolloutWorkflowId,
  trainJobWorkflowId,
  type ExperimentStatus,
  type JobState,
  type RegistryState,
  type RolloutStatus,
  type RunProgress,
} from '../workflows/api';
import type { rolloutWorkflow } from '../workflows/rollout';

/**
 * The reads every client of Gantry's state shares — the CLI's status, models and rollout commands and the
 * dashboard (ui/): Temporal's visibility for the lists, each workflow's query for its state, and its result once
 * it closed. Nothing here prints; each caller words it its own way.
 */

/** The message at the bottom of a chain of causes (an activity's failure inside a workflow's, say). */
export function rootCause(error: unknown): string {
  let current = error as { message?: string; cause?: unknown } | undefined;
  let message = current?.message ?? String(error);
  while (current?.cause) {
    current = current.cause as { message?: string; cause?: unknown };
    if (current.message) message = current.message;
  }
  return message;
}

export interface RunReport {
  runId: string;
  /** Temporal's execution status: RUNNING, COMPLETED, FAILED, … */
  status: string;
  startTime: Date;
  closeTime: Date | null;
  /** Null while no worker answers queries. */
  progress: RunProgress | null;
  result: unknown;
  error: string | null;
  /** A data-parallel run's train job (each replica's progress), when asked for and there is one. */
  job?: JobState | null;
}

/** A run's state: its progress while a worker answers, its result or error once it closed; undefined: no such run. */
export async function readRun(
  client: Client,
  runId: string,
  options: { replicas?: boolean } = {},
): Promise<RunReport | undefined> {
  const handle = client.workflow.getHandle(runId);
  let description;
  try {
    description = await handle.describe();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
  const status = description.status.name;
  // Queries need a live worker; the status and result below do not.
  const progress = await handle.query(progressQuery).catch(() => null);
  let result: unknown = null;
  let error: string | null = null;
  if (status === 'COMPLETED') result = await handle.result();
  if (status === 'FAILED')
    error = await handle.result().then(
      () => null,
      (e: unknown) => rootCause(e),
    );
  const report: RunReport = {
    runId,
    status,
    startTime: description.startTime,
    closeTime: description.closeTime ?? null,
    progress,
    result,
    error,
  };
  if (options.replicas) report.job = await readTrainJob(client, runId);
  return report;
}

/** A data-parallel run's train job state; null for single-trainer runs and until the job has started. */
export async function readTrainJob(client: Client, runId: string): Promise<JobState | null> {
  return client.workflow
    .getHandle(trainJobWorkflowId(runId))
    .query(jobStateQuery)
    .catch(() => null);
}

export interface RunSummary {
  runId: string;
  status: string;
  startTime: Date;
  closeTime: Date | null;
}

/**
 * The newest `limit` retrain runs of this deployment (its control task queue: GANTRY_TASK_QUEUE_PREFIX) that
 * Temporal's visibility knows, newest first.
 */
export async function listRuns(client: Client, limit = 50): Promise<RunSummary[]> {
  const runs: RunSummary[] = [];
  for await (const execution of client.workflow.list({
    query: `WorkflowType = 'retrainWorkflow' AND TaskQueue = '${taskQueueOf('control')}'`,
  })) {
    runs.push({
      runId: execution.workflowId,
      status: execution.status.name,
      startTime: execution.startTime,
      closeTime: execution.closeTime ?? null,
    });
    if (runs.length >= limit) break;
  }
  return runs.sort((a, b) => b.startTime.getTime() - a.startTime.getTime());
}

/** Every model of this deployment with a running registry workflow, by name, with its registry state. */
export async function listModels(client: Client): Promise<RegistryState[]> {
  const models: RegistryState[] = [];
  const scope = registryWorkflowId(deploymentPrefix(), '');
  for await (const execution of client.workflow.list({
    query:
      `WorkflowType = '${REGISTRY_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND WorkflowId ` +
      `STARTS_WITH '${scope}'`,
  })) {
    const model = modelOfRegistryWorkflowId(deploymentPrefix(), execution.workflowId);
    if (model === undefined) continue;
    const state = await readRegistry(client, model);
    if (state) models.push(state);
  }
  return models.sort((a, b) => a.model.localeCompare(b.model));
}

/** The model's rollout workflow while it runs, else undefined. */
export async function runningRollout(
  client: Client,
  model: string,
): Promise<WorkflowHandle<typeof rolloutWorkflow> | undefined> {
  const handle = client.workflow.getHandle<typeof rolloutWorkflow>(rolloutWorkflowId(deploymentPrefix(), model));
  try {
    const description = await handle.describe();
    return description.status.name === 'RUNNING' ? handle : undefined;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}

/**
 * The model's latest rollout, running or finished (its workflow id is the model's, reused by every rollout), with
 * whether it still runs; undefined when none ever ran or no worker answers.
 */
export async function readRollout(
  client: Client,
  model: string,
): Promise<{ running: boolean; status: RolloutStatus } | undefined> {
  const handle = client.workflow.getHandle(rolloutWorkflowId(deploymentPrefix(), model));
  try {
    const description = await handle.describe();
    return { running: description.status.name === 'RUNNING', status: await handle.query(rolloutStatusQuery) };
  } catch {
    return undefined;
  }
}

/** The model's latest experiment (running or finished); undefined when none ran or no worker answers. */
export async function readExperiment(
  client: Client,
  model: string,
): Promise<{ running: boolean; status: ExperimentStatus } | undefined> {
  const handle = client.workflow.getHandle(experimentWorkflowId(deploymentPrefix(), model));
  try {
    const description = await handle.describe();
    return { running: description.status.name === 'RUNNING', status: await handle.query(experimentStatusQuery) };
  } catch {
    return undefined;
  }
}
