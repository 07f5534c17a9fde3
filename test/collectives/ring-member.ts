/**
 * A rank in its own process, for tests that kill one (forked with `--import tsx` by
 * failures.test.ts; argv: "length,chunkBytes,timeoutMs" and the sharedMemory mode). Reports its address over IPC,
 * takes `{ rank, peers }`, joins the ring, then
 * all-reduces `length` floats in a loop, reporting each iteration before it starts.
 */
import { CollectiveGroup, type PeerAddress } from '../../collectives';
import { TEST_SECRET } from './ring';

const [length, chunkBytes, timeoutMs] = (process.argv[2] ?? '1000,65536,2000').split(',').map(Number) as [
  number,
  number,
  number,
];
const sharedMemory = (process.argv[3] ?? 'auto') as 'auto' | 'off';
const group = await CollectiveGroup.listen({
  jobId: 'job-test',
  attempt: 1,
  secret: TEST_SECRET,
  chunkBytes,
  timeoutMs,
  sharedMemory,
});
process.send!({ kind: 'address', ...group.address });
const { rank, peers } = await new Promise<{ rank: number; peers: PeerAddress[] }>((resolve) =>
  process.once('message', (message) => resolve(message as never)),
);
await group.connect({ rank, peers, timeoutMs: 5000 });
const data = new Float32Array(length).fill(1);
try {
  for (let iteration = 1; ; iteration++) {
    process.send!({ kind: 'iteration', iteration });
    await group.allReduce(data, { op: 'mean' });
  }
} catch (error) {
  process.send!({ kind: 'error', message: (error as Error).message });
  process.disconnect();
}
