import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCpuList, trainerCpuLists } from '../control/cpu-affinity';

const ROOT = path.resolve(import.meta.dirname, '..');

/** Runs `code` in a fresh Node with tsx from the project root; its stdout, stderr and exit status. */
function node(code: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('binding a train worker to CPUs', () => {
  it('reads Linux CPU lists and refuses anything else, naming the setting', () => {
    expect(parseCpuList('0', 'X')).toEqual([0]);
    expect(parseCpuList('0,2,4-6,2', 'X')).toEqual([0, 2, 4, 5, 6]);
    expect(() => parseCpuList('all', 'GANTRY_TRAIN_CPUS')).toThrow(/GANTRY_TRAIN_CPUS must be a CPU list/);
    expect(() => parseCpuList('3-1', 'GANTRY_TRAIN_CPUS')).toThrow(/GANTRY_TRAIN_CPUS: the range 3-1 runs backwards/);
    expect(() => parseCpuList('0-99999', 'X')).toThrow(/more than 4096/);
  });

  it('gantry dev gives each of its train workers an equal share of the CPUs it may use, or none when too few', () => {
    expect(trainerCpuLists([0, 1], 2)).toEqual(['0', '1']);
    expect(trainerCpuLists([4, 5, 6, 7, 8], 2)).toEqual(['4,5', '6,7']);
    expect(trainerCpuLists([0, 1], 3)).toBeUndefined();
  });

  it('binds every thread of the process, and the threads it starts later', () => {
    const result = node(`
      import { readdirSync, readFileSync } from 'node:fs';
      import { Worker } from 'node:worker_threads';
      import { bindToCpus } from './control/cpu-affinity.ts';
      const allowed = (file) => /Cpus_allowed_list:\\s*(\\S+)/.exec(readFileSync(file, 'utf8'))[1];
      console.log(bindToCpus('0', 'GANTRY_TRAIN_CPUS'));
      // A thread started after the binding (as TensorFlow's pools are) inherits it.
      const worker = new Worker('setInterval(() => {}, 1000)', { eval: true });
      await new Promise((resolve) => worker.once('online', resolve));
      const threads = readdirSync('/proc/self/task').map((t) => allowed('/proc/self/task/' + t + '/status'));
      console.log(JSON.stringify(threads));
      await worker.terminate();
    `);
    expect(result.status, result.stderr).toBe(0);
    const [count, threads] = result.stdout.trim().split('\n');
    expect(count).toBe('1');
    const lists = JSON.parse(threads!) as string[];
    expect(lists.length).toBeGreaterThan(4);
    expect(new Set(lists)).toEqual(new Set(['0']));
  });

  it('a train worker given a malformed list exits 2 naming it, before it connects anywhere', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'workers', 'train.ts')], {
      cwd: ROOT,
      env: { ...process.env, GANTRY_TRAIN_CPUS: 'cores 0-3', TEMPORAL_ADDRESS: '127.0.0.1:1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('GANTRY_TRAIN_CPUS must be a CPU list such as 0, 0-3 or 0,2,4-7; got "cores 0-3"');
  });
});
