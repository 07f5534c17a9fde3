import net, { type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, it } from 'vitest';
import {
  CollectiveError,
  CollectiveGroup,
  FrameReader,
  FrameType,
  type CollectiveGroupOptions,
  type PeerAddress,
} from '../../collectives';
import { closeAll, rankData, sameBytes, TEST_SECRET } from './ring';

const open: CollectiveGroup[] = [];
afterEach(async () => {
  await closeAll(open.splice(0));
});

async function listen(options: Partial<CollectiveGroupOptions> = {}): Promise<CollectiveGroup> {
  const group = await CollectiveGroup.listen({
    jobId: 'job-a',
    attempt: 1,
    secret: TEST_SECRET,
    timeoutMs: 2000,
    ...options,
  });
  open.push(group);
  return group;
}

const peerOf = (rank: number, group: CollectiveGroup): PeerAddress => ({ rank, ...group.address });

/**
 * Rank 1 (`joiner`) dials rank 0 (`host`) while rank 0 is still only listening, so its Hello is
 * waiting when rank 0 calls connect() and is refused first: the joiner's error is deterministic.
 * (What rank 0 reports depends on which refusal wins the race, so only its failure is checked.)
 */
async function refusedJoin(
  joinerOptions: Partial<CollectiveGroupOptions>,
): Promise<{ joiner: unknown; host: unknown }> {
  const host = await listen();
  const joiner = await listen(joinerOptions);
  const peers = [peerOf(0, host), peerOf(1, joiner)];
  const joined = joiner.connect({ rank: 1, peers }).catch((error: unknown) => error);
  await sleep(200);
  const hosted = host.connect({ rank: 0, peers, timeoutMs: 200 }).catch((error: unknown) => error);
  return { joiner: await joined, host: await hosted };
}

/** `joiner` connects while `host` connects as rank 0 with `hostPeers` (giving up after 300 ms): why `joiner` failed. */
async function joinRefusal(
  joiner: CollectiveGroup,
  joining: { rank: number; peers: PeerAddress[] },
  host: CollectiveGroup,
  hostPeers: PeerAddress[],
): Promise<string> {
  const joined = joiner.connect(joining).catch((error: unknown) => error);
  host.connect({ rank: 0, peers: hostPeers, timeoutMs: 300 }).catch(() => undefined);
  return ((await joined) as Error).message;
}

it('refuses a peer of another job, with the reason on the connecting side', async () => {
  const { joiner, host } = await refusedJoin({ jobId: 'job-b' });
  expect(joiner).toBeInstanceOf(CollectiveError);
  expect((joiner as CollectiveError).code).toBe('rejected');
  expect((joiner as CollectiveError).message).toContain(
    'peer rank 0 rejected the connection: job id "job-b" does not match this job "job-a"',
  );
  expect((joiner as CollectiveError).message).toMatch(/^rank 1 failed to join the ring of job "job-b" attempt 1: /);
  expect(host).toBeInstanceOf(CollectiveError);
});

it('refuses a peer of another attempt', async () => {
  const { joiner, host } = await refusedJoin({ attempt: 2 });
  expect((joiner as Error).message).toContain(
    "peer rank 0 rejected the connection: attempt 2 does not match this job's attempt 1",
  );
  expect(host).toBeInstanceOf(CollectiveError);
});

it('refuses a peer that disagrees on the world size or is not the expected neighbour', async () => {
  const [a, b, c] = [await listen(), await listen(), await listen()];
  // c believes it is rank 2 of 3 with rank 0 = a as its right neighbour; a is rank 0 of 2.
  const ringOfThree = [peerOf(0, a), peerOf(1, b), peerOf(2, c)];
  const wrongSize = await joinRefusal(c, { rank: 2, peers: ringOfThree }, a, [peerOf(0, a), peerOf(1, b)]);
  expect(wrongSize).toContain(
    "peer rank 0 rejected the connection: world size 3 does not match this ring's world size 2",
  );

  // d is rank 0 of 3 and expects rank 2 on its left; e (rank 1) has been told d is rank 2.
  const [d, e, f] = [await listen(), await listen(), await listen()];
  const told = [peerOf(0, f), peerOf(1, e), peerOf(2, d)];
  const misdirected = await joinRefusal(e, { rank: 1, peers: told }, d, [peerOf(0, d), peerOf(1, f), peerOf(2, e)]);
  expect(misdirected).toContain(
    'peer rank 2 rejected the connection: rank 1 is not the left neighbour of rank 0 (expected rank 2)',
  );
});

it('answers garbage with a reason and a close, and keeps waiting for the right peer', async () => {
  const rank1 = await listen();
  const rank0 = await listen();
  const peers = [peerOf(0, rank0), peerOf(1, rank1)];
  const ring1 = rank1.connect({ rank: 1, peers });

  // A stray HTTP client, and one that connects and says nothing.
  const stray = net.connect(rank1.port, '127.0.0.1');
  const silent = net.connect(rank1.port, '127.0.0.1');
  const strayAnswer = new FrameReader({ peer: 'rank 1' });
  stray.on('data', (chunk: Buffer) => strayAnswer.push(chunk));
  const strayClosed = new Promise((resolve) => stray.on('close', resolve));
  stray.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const answer = strayAnswer
    .receive({ type: FrameType.Welcome, tag: 0, what: 'an answer' })
    .catch((error: unknown) => error);
  await strayClosed;
  expect((await answer) as CollectiveError).toMatchObject({ code: 'rejected' });
  expect(((await answer) as CollectiveError).reason).toMatch(
    /^bad frame from 127\.0\.0\.1:\d+: magic 0x47455420 is not 0x47414e54/,
  );

  await sleep(100);
  await Promise.all([ring1, rank0.connect({ rank: 0, peers })]);
  silent.destroy();
  const arrays = [rankData(0, 1001), rankData(1, 1001)];
  await Promise.all([rank0.allReduce(arrays[0]!), rank1.allReduce(arrays[1]!)]);
  expect(sameBytes(arrays[0]!, arrays[1]!)).toBe(true);
});

it('a rank that joins last can already be sent data by neighbours that finished first', async () => {
  // Ranks 0 and 2 start their first all-reduce as soon as their own connect() resolves; rank 1
  // joins 100 ms later, so data frames (1 MiB chunks, far above the handshake's frame limit) reach
  // ranks whose connect() is still in progress.
  const groups = await Promise.all([0, 1, 2].map(() => listen({ chunkBytes: 1 << 20 })));
  const peers = groups.map((group, rank) => peerOf(rank, group));
  const inputs = groups.map((_, rank) => rankData(rank, 600_000));
  const results = inputs.map((input) => input.slice());
  await Promise.all(
    groups.map(async (group, rank) => {
      if (rank === 1) await sleep(100);
      await group.connect({ rank, peers });
      await group.allReduce(results[rank]!);
    }),
  );
  expect(sameBytes(results[0]!, results[1]!) && sameBytes(results[1]!, results[2]!)).toBe(true);
});

it('keeps dialling a neighbour that does not listen yet, until it does', async () => {
  // A port that was free a moment ago; the neighbour starts listening on it 300 ms later.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));

  const rank0 = await listen();
  const peers = [peerOf(0, rank0), { rank: 1, host: '127.0.0.1', port }];
  const ring0 = rank0.connect({ rank: 0, peers, timeoutMs: 3000 });
  await sleep(300);
  const rank1 = await listen({ port });
  await Promise.all([ring0, rank1.connect({ rank: 1, peers })]);
  expect([rank0.state, rank1.state]).toEqual(['ready', 'ready']);
});

it('gives up at the deadline when the neighbour never joins', async () => {
  const rank0 = await listen();
  const rank1 = await listen(); // listens, never calls connect()
  const started = Date.now();
  const error = await rank0
    .connect({ rank: 0, peers: [peerOf(0, rank0), peerOf(1, rank1)], timeoutMs: 300 })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(CollectiveError);
  expect((error as CollectiveError).code).toBe('timeout');
  expect((error as Error).message).toMatch(
    new RegExp(
      String.raw`^rank 0 failed to join the ring of job "job-a" attempt 1: timed out after 300 ms ` +
        String.raw`(waiting for rank 1 \(the left neighbour\)|connecting to rank 1)`,
    ),
  );
  expect(Date.now() - started).toBeLessThan(1500);
  expect(rank0.state).toBe('failed');
});

it('a ring of one needs no connections', async () => {
  const solo = await listen();
  await solo.connect({ rank: 0, peers: [peerOf(0, solo)] });
  const data = Float32Array.of(1, 2, 3);
  await solo.allReduce(data, { op: 'mean' });
  await solo.broadcast(data, 0);
  await solo.reduce(data, 0);
  await solo.barrier();
  expect(Array.from(data)).toEqual([1, 2, 3]);
});
