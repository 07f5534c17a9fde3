import { execFileSync } from 'node:child_process';

/**
 * Binds this process — every thread it has now, and so every thread they start — to a list of CPUs, as Horovod's
 * `mpirun --bind-to core` does for its ranks: replicas of one job on one host then stop trading cores and caches,
 * and the replica a step waits for is late less often. Linux's `taskset` (util-linux) does the binding; Node has
 * no affinity call of its own.
 */

/** A Linux CPU list: `3`, `0-3`, `0,2,4-7`. */
const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** The CPUs a list names, each once; throws naming `source` when it is not a CPU list. */
export function parseCpuList(list: string, source: string): number[] {
  if (!CPU_LIST.test(list)) throw new Error(`${source} must be a CPU list such as 0, 0-3 or 0,2,4-7; got "${list}"`);
  const cpus = new Set<number>();
  for (const part of list.split(',')) {
    const [from, to = from] = part.split('-').map(Number) as [number, number?];
    if (to! < from) throw new Error(`${source}: the range ${part} runs backwards`);
    if (to! - from > 4096) throw new Error(`${source}: the range ${part} names more than 4096 CPUs`);
    for (let cpu = from; cpu <= to!; cpu++) cpus.add(cpu);
  }
  return [...cpus];
}

/** Binds every thread of this process to `list`'s CPUs; returns how many CPUs that is. */
export function bindToCpus(list: string, source: string): number {
  const cpus = parseCpuList(list, source);
  try {
    execFileSync('taskset', ['--all-tasks', '--pid', '--cpu-list', cpus.join(','), String(process.pid)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${source}: could not bind to CPUs ${list}: ${stderr || (error as Error).message}`);
  }
  return cpus.length;
}

/**
 * The CPU list of each of `trainers` train workers on one host: `allowed` (the CPUs this process may use) cut into
 * equal consecutive shares, one per worker; undefined when there are fewer CPUs than workers.
 */
export function trainerCpuLists(allowed: readonly number[], trainers: number): string[] | undefined {
  const share = Math.floor(allowed.length / trainers);
  if (trainers < 1 || share < 1) return undefined;
  return Array.from({ length: trainers }, (_, i) => allowed.slice(i * share, (i + 1) * share).join(','));
}
