import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { deploymentPrefix } from './task-queues';
import { registryStateQuery, registryWorkflowId, type RegistryState } from '../workflows/api';

/**
 * The registry's state for `model` in this deployment (GANTRY_TASK_QUEUE_PREFIX: two deployments
 * that share a namespace keep separate registries), or undefined when no version was ever registered.
 */
export async function readRegistry(client: Client, model: string): Promise<RegistryState | undefined> {
  try {
    return await client.workflow.getHandle(registryWorkflowId(deploymentPrefix(), model)).query(registryStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}
