import { fork } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import {
  CollectiveGroup,
  SHARED_MEMORY_DIR,
  segmentPrefix,
  sharedMemoryAddon,
  type CollectiveGroupOptions,
  type PeerAddress,
} from '../../collectives';
import { closeAll, rankData, referenceSum, sameBytes, TEST_SECRET, worstError } from './ring';

// The same-host transport of all-reduce (collectives/shared-memory.ts). scripts/setup.sh
// builds its addon; these tests need it.
const HERE = path.dirname(fileURLToPath(import.meta.url));
const open: CollectiveGroup[] = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  await closeAll(open.splice(0));
  for (const cleanup of cleanups.splice(0)) cleanup();
});

let jobs = 0;
/** A ring whose ranks may differ in options; a fresh job id each, so segment files can be told apart. */
async function ring(
  perRank: Array<Partial<CollectiveGroupOptions>>,
  jobId = `job-shm-${process.pid}-${++jobs}`,
): Promise<CollectiveGroup[]> {
  const groups = await Promise.all(
    perRank.map((options) =>
      CollectiveGroup.listen({ jobId, attempt: 1, secret: TEST_SECRET, timeoutMs: 2000, ...options }),
    ),
  );
  open.push(...groups);
  const peers = groups.map((group, rank) => ({ rank, ...group.address }));
  await Promise.all(groups.map((group, rank) => group.connect({ rank, peers, timeoutMs: 5000 })));
  return groups;
}

const segmentFiles = (jobId: string): string[] =>
  readdirSync(SHARED_MEMORY_DIR).filter((name) => name.startsWith(segmentPrefix(jobId)));

it('the addon is built and loads', () => {
  expect(sharedMemoryAddon()).toHaveProperty('addon');
});

it(
  'ranks on one host all-reduce through shared memory, grow their segments for long arrays, ' +
    'and leave no files behind',
  async () => {
    const jobId = `job-shm-files-${process.pid}`;
    const groups = await ring([{}, {}, {}], jobId);
    expect(groups.map((group) => group.transport)).toEqual(Array(3).fill({ allReduce: 'shared-memory' }));
    expect(segmentFiles(jobId)).toEqual([]); // unlinked once every rank had mapped them
    // 1 MiB segments at first; 3M floats (12 MB) makes every rank grow them together.
    for (const length of [1000, 3_000_001, 17]) {
      const inputs = groups.map((_, rank) => rankData(rank, length, 5));
      const expected = referenceSum(inputs);
      const results = inputs.map((input) => input.slice());
      await Promise.all(groups.map((group, rank) => group.allReduce(results[rank]!)));
      expect(worstError(results[0]!, expected, 1e-5)).toBeLessThanOrEqual(0);
      for (const result of results) expect(sameBytes(result, results[0]!)).toBe(true);
    }
    expect(groups[0]!.transport).toEqual({ allReduce: 'shared-memory' });
    expect(segmentFiles(jobId)).toEqual([]);
  },
);

it('a rank in another process: its gradients arrive through shared memory', async () => {
  const group = await CollectiveGroup.listen({ jobId: 'job-test', attempt: 1, secret: TEST_SECRET, timeoutMs: 5000 });
  open.push(group);
  // ring-member all-reduces (mean) an array of ones in a loop; this rank contributes threes.
  const child = fork(path.join(HERE, 'ring-member.ts'), ['300000,1048576,5000', 'auto'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  cleanups.push(() => child.kill('SIGKILL'));
  const address = await new Promise<{ host: string; port: number }>((resolve) =>
    child.once('message', (message) => resolve(message as never)),
  );
  const peers: PeerAddress[] = [
    { rank: 0, ...group.address },
    { rank: 1, host: address.host, port: address.port },
  ];
  child.send({ rank: 1, peers });
  await group.connect({ rank: 0, peers, timeoutMs: 10_000 });
  expect(group.transport).toEqual({ allReduce: 'shared-memory' });
  const data = new Float32Array(300_000).fill(3);
  await group.allReduce(data, { op: 'mean' });
  expect(data.every((value) => value === 2)).toBe(true);
});

it(
  "ranks that cannot map each other's segments (as on two hosts) fall back to TCP and say why; " +
    '"require" refuses instead',
  async () => {
    const dirs = [0, 1].map(() => mkdtempSync(path.join(os.tmpdir(), 'gantry-shm-host-')));
    cleanups.push(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
    const groups = await ring(dirs.map((dir) => ({ sharedMemoryDir: dir })));
    for (const group of groups) {
      expect(group.transport.allReduce).toBe('tcp');
      expect(group.transport.reason).toMatch(
        /rank [01] cannot map rank [01]'s segment \(another host\?\): cannot open .*No such file/,
      );
    }
    const arrays = [Float32Array.of(1, 2), Float32Array.of(10, 20)];
    await Promise.all(groups.map((group, rank) => group.allReduce(arrays[rank]!)));
    expect(arrays.map((array) => Array.from(array))).toEqual([
      [11, 22],
      [11, 22],
    ]);
    for (const dir of dirs) expect(readdirSync(dir)).toEqual([]);

    const required = ring(dirs.map((dir) => ({ sharedMemoryDir: dir, sharedMemory: 'require' as const })));
    await expect(required).rejects.toThrow(
      /failed to join the ring .*: shared memory is required but cannot be used: .*cannot map/,
    );
  },
);

it('without the addon, rings use TCP and say why', async () => {
  const previous = process.env.GANTRY_SHARED_MEMORY_ADDON;
  process.env.GANTRY_SHARED_MEMORY_ADDON = path.join(os.tmpdir(), 'no-such-addon.node');
  cleanups.push(() =>
    previous === undefined
      ? delete process.env.GANTRY_SHARED_MEMORY_ADDON
      : (process.env.GANTRY_SHARED_MEMORY_ADDON = previous),
  );
  const groups = await ring([{}, {}]);
  expect(groups[0]!.transport).toEqual({
    allReduce: 'tcp',
    reason: expect.stringMatching(/rank [01]: the shared-memory addon is not built \(.*no-such-addon\.node/),
  });
  const arrays = [Float32Array.of(1), Float32Array.of(2)];
  await Promise.all(groups.map((group, rank) => group.allReduce(arrays[rank]!)));
  expect(arrays.map((array) => array[0])).toEqual([3, 3]);
});

it('a rank with shared memory off cannot join ranks that have it on: the handshake says so', async () => {
  await expect(ring([{}, { sharedMemory: 'off' }])).rejects.toThrow(
    new RegExp(
      String.raw`rank [01] has shared memory (on|off) where rank [01] has it (off|on) ` +
        String.raw`\(set sharedMemory / GANTRY_SHARED_MEMORY alike on every trainer\)`,
    ),
  );
});

it('a bad sharedMemory or spin setting is refused when the group is created', async () => {
  await expect(
    CollectiveGroup.listen({ jobId: 'job-test', attempt: 1, secret: TEST_SECRET, sharedMemory: 'sometimes' as never }),
  ).rejects.toThrow('CollectiveGroup.listen: sharedMemory must be one of auto, off, require, not "sometimes"');
  await expect(
    CollectiveGroup.listen({ jobId: 'job-test', attempt: 1, secret: TEST_SECRET, sharedMemorySpinMs: -1 }),
  ).rejects.toThrow('sharedMemorySpinMs must be a number of milliseconds in 0–100, not -1');
});
