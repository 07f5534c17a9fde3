/**
 * The two worker pools are two task queues. A prefix (GANTRY_TASK_QUEUE_PREFIX) lets several
 * Gantry deployments share one Temporal namespace without stealing each other's tasks or models:
 * it scopes the task queues and the registry workflows' ids alike.
 */
export type Pool = 'control' | 'train';
export const POOLS: readonly Pool[] = ['control', 'train'];

export function deploymentPrefix(env: NodeJS.ProcessEnv = process.env): string {
  return env.GANTRY_TASK_QUEUE_PREFIX || 'gantry';
}

export function taskQueueOf(pool: Pool, env: NodeJS.ProcessEnv = process.env): string {
  return `${deploymentPrefix(env)}-${pool}`;
}
