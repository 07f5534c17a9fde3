/**
 * The two worker pools are two task queues. A prefix (GANTRY_TASK_QUEUE_PREFIX) lets several
 * Gantry deployments share one Temporal namespace without stealing each other's tasks.
 */
export type Pool = 'control' | 'train';
export const POOLS: readonly Pool[] = ['control', 'train'];

export function taskQueueOf(pool: Pool, env: NodeJS.ProcessEnv = process.env): string {
  const prefix = env.GANTRY_TASK_QUEUE_PREFIX || 'gantry';
  return `${prefix}-${pool}`;
}
