/**
 * Worker pools are task queues. `control` and `train` are Gantry's own; a project may name more (a
 * `gpu` or `etl` pool for its own steps), each an identifier. A prefix (GANTRY_TASK_QUEUE_PREFIX) lets
 * several Gantry deployments share one Temporal namespace without stealing each other's tasks or models:
 * it scopes the task queues and the registry workflows' ids alike.
 */
export type BuiltInPool = 'control' | 'train';
/** A built-in pool or a project's own (`string & {}` keeps the built-in names autocompleted). */
export type Pool = BuiltInPool | (string & {});
/** Gantry's own pools (typed as Pool so a name from the command line can be looked up in it). */
export const POOLS: readonly Pool[] = ['control', 'train'];

const POOL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Throws, naming the pool, unless `pool` is a valid pool name (what a spec's `steps[].pool` accepts). */
export function checkPoolName(pool: string): string {
  if (!POOL_NAME.test(pool))
    throw new Error(
      `pool ${JSON.stringify(pool)} is not a pool name: 1-63 characters of a-z, 0-9, "-" or "_", ` +
        'starting with a letter or digit',
    );
  return pool;
}

export function deploymentPrefix(env: NodeJS.ProcessEnv = process.env): string {
  return env.GANTRY_TASK_QUEUE_PREFIX || 'gantry';
}

export function taskQueueOf(pool: Pool, env: NodeJS.ProcessEnv = process.env): string {
  return `${deploymentPrefix(env)}-${checkPoolName(pool)}`;
}
