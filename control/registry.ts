import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { deploymentPrefix } from './task-queues';
import { registryStateQuery, registryWorkflowId, type RegistryState } from '../workflows/api';

/**
 * The registry's state for `model` in this deployment (GANTRY_TASK_QUEUE_PREFIX: two deployments
 * that share a namespace keep separate registries), or undefined when no version was ever registered.
 */
/** The handle of `model`'s registry workflow in this deployment (GANTRY_TASK_QUEUE_PREFIX). */
export function registryHandle(client: Client, model: string): WorkflowHandle {
  return client.workflow.getHandle(registryWorkflowId(deploymentPrefix(), model));
}

export async function readRegistry(client: Client, model: string): Promise<RegistryState | undefined> {
  try {
    return await registryHandle(client, model).query(registryStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}
