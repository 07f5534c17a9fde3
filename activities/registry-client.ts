import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { deploymentPrefix } from '../control/task-queues';
import { registryStateQuery, type RegistryState } from '../workflows/registry';

/**
 * The id of `model`'s registry workflow. Scoped by the deployment prefix: two deployments that
 * share a namespace keep separate registries (and each registry runs on its own control pool).
 */
export function registryWorkflowId(model: string, env: NodeJS.ProcessEnv = process.env): string {
  return `${deploymentPrefix(env)}-registry:${model}`;
}

/** The model name of a registry workflow id of this deployment, or undefined for any other id. */
export function modelOfRegistryWorkflowId(
  workflowId: string,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const prefix = `${deploymentPrefix(env)}-registry:`;
  return workflowId.startsWith(prefix) ? workflowId.slice(prefix.length) : undefined;
}

/** The registry's state for `model`, or undefined when no version was ever registered. */
export async function readRegistry(client: Client, model: string): Promise<RegistryState | undefined> {
  try {
    return await client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}
