import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { registryStateQuery, registryWorkflowId, type RegistryState } from '../workflows/registry';

/** The registry's state for `model`, or undefined when no version was ever registered. */
export async function readRegistry(client: Client, model: string): Promise<RegistryState | undefined> {
  try {
    return await client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}
