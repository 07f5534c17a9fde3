import { randomBytes } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { deploymentPrefix, taskQueueOf } from '../control/task-queues';
import { applyOverrides, loadPipeline, PipelineSpecError, validateSubmission, type PipelineSpec } from '../pipelines';
import { retrainRunId, type RetrainInput } from '../workflows/api';
import { retrainWorkflow } from '../workflows/retrain';
import { UsageError } from './errors';

/** The spec a command will run: the named pipeline with `--set` overrides, validated in full. */
export async function resolveSpec(pipeline: string, sets: string[]): Promise<PipelineSpec> {
  try {
    return validateSubmission(applyOverrides(await loadPipeline(pipeline), sets));
  } catch (error) {
    if (error instanceof PipelineSpecError) throw new UsageError(error.message);
    throw new UsageError((error as Error).message);
  }
}

export function retrainInput(spec: PipelineSpec): RetrainInput {
  return {
    spec,
    taskQueues: { control: taskQueueOf('control'), train: taskQueueOf('train') },
    deploymentPrefix: deploymentPrefix(),
  };
}

/** A readable, unique run id: the pipeline, the UTC time and a short random suffix. */
export function newRunId(spec: PipelineSpec): string {
  return retrainRunId(spec.name, new Date(), randomBytes(2).toString('hex'));
}

export async function startRun(
  client: Client,
  spec: PipelineSpec,
  runId = newRunId(spec),
): Promise<WorkflowHandle<typeof retrainWorkflow>> {
  return client.workflow.start(retrainWorkflow, {
    workflowId: runId,
    taskQueue: taskQueueOf('control'),
    args: [retrainInput(spec)],
  });
}
