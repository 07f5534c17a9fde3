import { fork, type ChildProcess } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import {
  acceptHandshake,
  CollectiveError,
  CollectiveGroup,
  encodeHeader,
  FramedSocket,
  FrameType,
  offerHandshake,
  type PeerAddress,
} from '../../collectives';
import { closeAll, makeRing, TEST_SECRET } from './ring';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const open: CollectiveGroup[] = [];
const children: ChildProcess[] = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const cleanup of cleanups.splice(0)) cleanup();
  await closeAll(open.splice(0));
});

async function ring(n: number, options: Parameters<typeof makeRing>[1] = {}): Promise<CollectiveGroup[]> {
  const groups = await makeRing(n, options);
  open.push(...groups);
  return groups;
}

const failureOf = (promise: Promise<unknown>): Promise<CollectiveError> =>
  promise.then(
    () => {
      throw new Error('expected the operation to fail');
    },
    (error: unknown) => error as CollectiveError,
  );

it('a peer that sends a truncated frame and closes fails the receiving rank at once', async () => {
  // TCP only: the fake peer below speaks the wire protocol, not the shared-memory set-up.
  const group = await CollectiveGroup.listen({
    jobId: 'job-test',
    attempt: 1,
    secret: TEST_SECRET,
    timeoutMs: 2000,
    chunkBytes: 1 << 20,
    sharedMemory: 'off',
  });
  open.push(group);
  const identity = { jobId: 'job-test', attempt: 1, rank: 1, worldSize: 2 };
  // A fake rank 1 built from raw sockets, with valid handshakes both ways. Rank 0 receives on the
  // connection it dialled, so that is where the fake announces a 1 MiB frame, sends 1000 bytes of
  // it and closes.
  let sendTruncated!: () => void;
  const accepted = new Promise<void>((resolve) => {
    const server = net.createServer((socket) => {
      const conn = new FramedSocket(socket, { peer: 'rank 0' });
      cleanups.push(() => conn.destroy());
      void acceptHandshake(conn, identity, TEST_SECRET, 0, 2000).then(() => {
        sendTruncated = () => {
          socket.write(encodeHeader(FrameType.AllReduce, 1, 1 << 20));
          socket.end(Buffer.alloc(1000));
        };
        resolve();
      });
    });
    cleanups.push(() => server.close());
    server.listen(0, '127.0.0.1', () => {
      const peers: PeerAddress[] = [
        { rank: 0, ...group.address },
        { rank: 1, host: '127.0.0.1', port: (server.address() as AddressInfo).port },
      ];
      void group.connect({ rank: 0, peers });
    });
  });
  const dialled = new FramedSocket(net.connect(group.port, '127.0.0.1'), { peer: 'rank 0' });
  cleanups.push(() => dialled.destroy());
  await offerHandshake(dialled, identity, TEST_SECRET, 0, 2000);
  await accepted;
  await expect.poll(() => group.state).toBe('ready');

  const started = Date.now();
  // 512Ki floats over 2 ranks: rank 0 first receives segment 1, one 1 MiB chunk.
  const pending = failureOf(group.allReduce(new Float32Array(512 * 1024)));
  sendTruncated();
  const error = await pending;
  expect(error.code).toBe('truncated');
  expect(error.message).toContain(
    'allReduce #1 failed on rank 0 of 2: truncated frame from rank 1: ' +
      'expected 1048576 payload bytes, got 1000 before the connection closed',
  );
  expect(Date.now() - started).toBeLessThan(1000);
  expect(group.state).toBe('failed');
});

it.each(['off', 'auto'] as const)(
  'a peer process killed mid-all-reduce makes the others fail fast, not hang (shared memory %s)',
  async (sharedMemory) => {
    const [rank0, rank1] = await Promise.all(
      [0, 1].map(() =>
        CollectiveGroup.listen({
          jobId: 'job-test',
          attempt: 1,
          secret: TEST_SECRET,
          timeoutMs: 2000,
          chunkBytes: 256 * 1024,
          sharedMemory,
        }),
      ),
    );
    open.push(rank0!, rank1!);
    const child = fork(path.join(HERE, 'ring-member.ts'), ['1000000,262144,2000', sharedMemory], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    const address = await new Promise<{ host: string; port: number }>((resolve) =>
      child.once('message', (message) => resolve(message as never)),
    );
    const peers: PeerAddress[] = [
      { rank: 0, ...rank0!.address },
      { rank: 1, ...rank1!.address },
      { rank: 2, host: address.host, port: address.port },
    ];
    let iterations = 0;
    const thirdIteration = new Promise<void>((resolve) =>
      child.on('message', (message: { kind: string; iteration?: number }) => {
        if (message.kind === 'iteration' && (iterations = message.iteration!) === 3) resolve();
      }),
    );
    child.send({ rank: 2, peers });
    await Promise.all([rank0!.connect({ rank: 0, peers }), rank1!.connect({ rank: 1, peers })]);
    expect(rank0!.transport.allReduce).toBe(sharedMemory === 'off' ? 'tcp' : 'shared-memory');

    // Both in-process ranks all-reduce 4 MB in a loop, as a trainer would every step.
    const data = [new Float32Array(1_000_000).fill(1), new Float32Array(1_000_000).fill(1)];
    const loops = [rank0!, rank1!].map((group, rank) =>
      failureOf(
        (async () => {
          for (;;) await group.allReduce(data[rank]!, { op: 'mean' });
        })(),
      ),
    );
    await thirdIteration;
    child.kill('SIGKILL');
    const killed = Date.now();
    const errors = await Promise.all(loops);
    const elapsed = Date.now() - killed;

    // The child may report one more iteration between the IPC message and the signal landing.
    expect(iterations).toBeGreaterThanOrEqual(3);
    expect(elapsed).toBeLessThan(2000); // the receive timeout: a disconnect is noticed well before it
    for (const [rank, error] of errors.entries()) {
      expect(error).toBeInstanceOf(CollectiveError);
      expect(error.message).toMatch(new RegExp(`^allReduce #\\d+ failed on rank ${rank} of 3: .*rank 2`));
    }
    expect([rank0!.state, rank1!.state]).toEqual(['failed', 'failed']);
  },
);

it.each([
  ['off', 'timed out after 300 ms waiting for rank 1 to send allReduce #1 (step 1 of 2, floats 5–10)'],
  ['auto', 'timed out after 300 ms waiting for rank 1 to arrive in allReduce #1 (shared memory)'],
] as const)(
  'a silent peer times out the operation, naming the rank and what was awaited, ' +
    'and the ring is told (shared memory %s)',
  async (sharedMemory, awaited) => {
    const [rank0, rank1] = await ring(2, { sharedMemory });
    const started = Date.now();
    const error = await failureOf(rank0!.allReduce(new Float32Array(10), { timeoutMs: 300 }));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(error.code).toBe('timeout');
    expect(error.message).toBe(`allReduce #1 failed on rank 0 of 2: ${awaited}`);
    // Rank 1 is idle, but rank 0 told it why it gave up: its next operation fails at once.
    await expect.poll(() => rank1!.state, { timeout: 1000 }).toBe('failed');
    const next = await failureOf(rank1!.barrier());
    expect(next.message).toMatch(
      new RegExp(
        String.raw`^barrier cannot run on rank 1: the group is failed \(rank 0 aborted: ` +
          'allReduce #1 failed on rank 0 of 2: timed out',
      ),
    );
    await expect(rank0!.barrier()).rejects.toThrow('barrier cannot run on rank 0: the group is failed');
  },
);

it.each([
  ['off', /payload bytes where allReduce #1 .* needs \d+; do all ranks pass the same length/],
  [
    'auto',
    /rank [01] all-reduces 1[02] floats where allReduce #1 on rank [01] has 1[02]; do all ranks pass the same length/,
  ],
] as const)(
  'ranks that call different operations, or different lengths, get a protocol error (shared memory %s)',
  async (sharedMemory, lengthProblem) => {
    const [a0, a1] = await ring(2, { sharedMemory });
    const started = Date.now();
    const mismatch = await failureOf(
      Promise.all([a0!.broadcast(new Float32Array(8), 0), a1!.allReduce(new Float32Array(8))]),
    );
    expect(mismatch.code).toMatch(/protocol|aborted/);
    expect(Date.now() - started).toBeLessThan(1000); // noticed, not timed out (2 s)
    const [b0, b1] = await ring(2, { sharedMemory });
    const lengths = await Promise.allSettled([
      b0!.allReduce(new Float32Array(10)),
      b1!.allReduce(new Float32Array(12)),
    ]);
    const messages = lengths.map((result) =>
      result.status === 'rejected' ? (result.reason as Error).message : 'resolved',
    );
    expect(messages.some((message) => lengthProblem.test(message))).toBe(true);
    expect(a1!.state).toBe('failed');
    await expect.poll(() => a0!.state, { timeout: 1000 }).toBe('failed');
  },
);

it('a neighbour that closed between operations fails the next one immediately', async () => {
  const [rank0, rank1, rank2] = await ring(3);
  await rank2!.close();
  const started = Date.now();
  const error = await failureOf(
    Promise.all([rank0!.allReduce(new Float32Array(100)), rank1!.allReduce(new Float32Array(100))]),
  );
  expect(Date.now() - started).toBeLessThan(1000);
  expect(error.message).toMatch(/^allReduce #1 failed on rank [01] of 3: /);
  await expect(rank2!.allReduce(new Float32Array(1))).rejects.toThrow(
    'allReduce cannot run on rank 2: the group is closed (rank 2 closed the group)',
  );
});
