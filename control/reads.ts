import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type QueryDefinition } from '@temporalio/common';
import { z } from 'zod';
import { SearchParamSchema } from '../pipelines/spec';
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
  type JobState,
  type RegistryState,
  type RunProgress,
} from '../workflows/api';
import type { rolloutWorkflow } from '../workflows/rollout';
import { studyStatusQuery, TUNE_WORKFLOW_TYPE, type StudyStatus } from '../workflows/tune-api';
import type { Space } from '../workflows/tuning/space';

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
 * The latest run of a workflow whose id a model reuses for every run (its rollout, its experiment), running or
 * finished, with whether it still runs; undefined when none ever ran or no worker answers its query.
 */
async function readLatest<T>(
  client: Client,
  workflowId: string,
  query: QueryDefinition<T>,
): Promise<{ running: boolean; status: T } | undefined> {
  const handle = client.workflow.getHandle(workflowId);
  try {
    const description = await handle.describe();
    return { running: description.status.name === 'RUNNING', status: await handle.query(query) };
  } catch {
    return undefined;
  }
}

/** The model's latest rollout (running or finished); undefined when none ran or no worker answers. */
export function readRollout(client: Client, model: string) {
  return readLatest(client, rolloutWorkflowId(deploymentPrefix(), model), rolloutStatusQuery);
}

/** The model's latest experiment (running or finished); undefined when none ran or no worker answers. */
export function readExperiment(client: Client, model: string) {
  return readLatest(client, experimentWorkflowId(deploymentPrefix(), model), experimentStatusQuery);
}

export interface StudySummary {
  studyId: string;
  /** Temporal's execution status: RUNNING, COMPLETED, FAILED, … */
  status: string;
  startTime: Date;
  closeTime: Date | null;
  /** Null while no worker answers the study's query. */
  study: StudyStatus | null;
}

/** How long a study's query may take: a worker answers in milliseconds, a lost one must not stall a page. */
const STUDY_QUERY_MS = 5_000;

/**
 * The study's status query, or null when no worker polls its task queue (Temporal would hold the query until its
 * own timeout) or none answers within STUDY_QUERY_MS.
 */
async function queryStudy(client: Client, studyId: string, taskQueue: string): Promise<StudyStatus | null> {
  try {
    const queue = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: taskQueue },
      // TASK_QUEUE_TYPE_WORKFLOW (the enum lives in @temporalio/proto, which Gantry does not depend on directly).
      taskQueueType: 1,
    });
    if (!queue.pollers?.length) return null;
    return await client.withDeadline(Date.now() + STUDY_QUERY_MS, () =>
      client.workflow.getHandle(studyId).query(studyStatusQuery),
    );
  } catch {
    return null;
  }
}

/** The study's state (its query) and Temporal's status of it; undefined: no such study. */
export async function readStudy(client: Client, studyId: string): Promise<StudySummary | undefined> {
  const handle = client.workflow.getHandle(studyId);
  let description;
  try {
    description = await handle.describe();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
  if (description.type !== TUNE_WORKFLOW_TYPE) return undefined;
  return {
    studyId,
    status: description.status.name,
    startTime: description.startTime,
    closeTime: description.closeTime ?? null,
    // Queries need a live worker; the status above does not.
    study: await queryStudy(client, studyId, description.taskQueue),
  };
}

/** The newest `limit` tuning studies of this deployment (its control task queue), newest first, with their state. */
export async function listStudies(client: Client, limit = 50): Promise<StudySummary[]> {
  const studies: StudySummary[] = [];
  for await (const execution of client.workflow.list({
    query: `WorkflowType = '${TUNE_WORKFLOW_TYPE}' AND TaskQueue = '${taskQueueOf('control')}'`,
  })) {
    studies.push({
      studyId: execution.workflowId,
      status: execution.status.name,
      startTime: execution.startTime,
      closeTime: execution.closeTime ?? null,
      study: await queryStudy(client, execution.workflowId, execution.taskQueue),
    });
    if (studies.length >= limit) break;
  }
  return studies.sort((a, b) => b.startTime.getTime() - a.startTime.getTime());
}

const StartedStudy = z.object({
  spec: z.object({ tuning: z.object({ space: z.record(z.string(), SearchParamSchema) }) }),
});

/**
 * The study's search space, from its start event's input (the status query does not carry it): how each parameter
 * was drawn (log-uniform, uniform, integer, choice). Null when the history or its input cannot be read.
 */
export async function readStudySpace(client: Client, studyId: string): Promise<Space | null> {
  try {
    // One event: the start, whatever the study's length.
    const page = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId: studyId },
      maximumPageSize: 1,
    });
    const payload = page.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    if (!payload) return null;
    const input = StartedStudy.safeParse(defaultPayloadConverter.fromPayload(payload as never));
    return input.success ? input.data.spec.tuning.space : null;
  } catch {
    return null;
  }
}
