import { z } from 'zod';
import { CollectiveError, FrameType, type FramedSocket } from './frames';
import { describeIssues } from '../validation/issues';

/**
 * The first frame on every ring connection says who is calling: `{ jobId, attempt, rank,
 * worldSize, sharedMemory }`. Ports are reused across jobs and attempts, so a trainer left over
 * from a previous attempt (or another job) can reach a listener that is not its ring; checking
 * identity before a single data byte flows turns that into a clear refusal instead of silently
 * mixed gradients.
 *
 * The connecting side sends Hello; the accepting side answers Welcome (with its own identity, which
 * the connecting side checks in turn) or Reject with the reason, then closes.
 */

export const HandshakeSchema = z
  .object({
    jobId: z.string().min(1),
    attempt: z.number().int().min(0),
    rank: z.number().int().min(0),
    worldSize: z.number().int().min(1),
    /** Whether this rank takes part in choosing shared memory for all-reduce (absent: it does not). */
    sharedMemory: z.boolean().optional(),
  })
  .strict();
export type Handshake = z.infer<typeof HandshakeSchema>;

/** Handshakes are tiny; a peer announcing more before it has identified itself is not a peer. */
export const HANDSHAKE_MAX_BYTES = 64 * 1024;

/**
 * Why `theirs` is not the peer `ours` expects in that position of the ring (`neighbour` = which
 * side it is on, `expectedRank` = its rank), or undefined when it is.
 */
export function handshakeMismatch(
  theirs: Handshake,
  ours: Handshake,
  neighbour: 'left' | 'right',
  expectedRank: number,
): string | undefined {
  if (theirs.jobId !== ours.jobId)
    return `job id ${JSON.stringify(theirs.jobId)} does not match this job ${JSON.stringify(ours.jobId)}`;
  if (theirs.attempt !== ours.attempt)
    return `attempt ${theirs.attempt} does not match this job's attempt ${ours.attempt}`;
  if (theirs.worldSize !== ours.worldSize)
    return `world size ${theirs.worldSize} does not match this ring's world size ${ours.worldSize}`;
  if (theirs.rank !== expectedRank)
    return `rank ${theirs.rank} is not the ${neighbour} neighbour of rank ${ours.rank} (expected rank ${expectedRank})`;
  // Every rank must take the same steps after connecting (choosing the transport is collective).
  const [theirShared, ourShared] = [theirs.sharedMemory ?? false, ours.sharedMemory ?? false];
  if (theirShared !== ourShared) {
    return (
      `rank ${theirs.rank} has shared memory ${theirShared ? 'on' : 'off'} ` +
      `where rank ${ours.rank} has it ${ourShared ? 'on' : 'off'} ` +
      '(set sharedMemory / GANTRY_SHARED_MEMORY alike on every trainer)'
    );
  }
  return undefined;
}

export function parseHandshake(payload: Buffer): Handshake {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new Error('handshake payload is not JSON');
  }
  const parsed = HandshakeSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`invalid handshake: ${describeIssues(parsed.error)}`);
  }
  return parsed.data;
}

function encodeHandshake(handshake: Handshake): Buffer {
  return Buffer.from(JSON.stringify(handshake), 'utf8');
}

/**
 * Accepting side: read the caller's Hello, check it is `expectedRank`, answer Welcome. On any
 * problem (garbage, wrong identity, silence until `timeoutMs`) the caller gets a Reject with the
 * reason, the connection is closed, and this throws with the reason.
 */
export async function acceptHandshake(
  conn: FramedSocket,
  ours: Handshake,
  expectedRank: number,
  timeoutMs: number,
): Promise<Handshake> {
  let theirs: Handshake;
  try {
    const payload = await conn.receive({ type: FrameType.Hello, tag: 0, what: 'a handshake', timeoutMs });
    theirs = parseHandshake(payload!);
  } catch (error) {
    const reason = (error as Error).message;
    void conn.closeWith(FrameType.Reject, reason);
    throw new CollectiveError('handshake', `refused a connection from ${conn.peer}: ${reason}`, { cause: error });
  }
  const problem = handshakeMismatch(theirs, ours, 'left', expectedRank);
  if (problem) {
    void conn.closeWith(FrameType.Reject, problem);
    throw new CollectiveError(
      'handshake',
      `refused a connection from ${conn.peer} claiming rank ${theirs.rank}: ${problem}`,
    );
  }
  conn.send(FrameType.Welcome, 0, encodeHandshake(ours));
  return theirs;
}

/**
 * Connecting side: send Hello, wait for Welcome from `peerRank`. A Reject surfaces as
 * `peer rank N rejected the connection: <reason>` (code 'rejected'); a Welcome from the wrong
 * peer is refused here in turn (code 'handshake').
 */
export async function offerHandshake(
  conn: FramedSocket,
  ours: Handshake,
  peerRank: number,
  timeoutMs: number,
): Promise<Handshake> {
  conn.send(FrameType.Hello, 0, encodeHandshake(ours));
  let theirs: Handshake;
  try {
    const payload = await conn.receive({
      type: FrameType.Welcome,
      tag: 0,
      what: `rank ${peerRank}'s answer to the handshake`,
      timeoutMs,
    });
    theirs = parseHandshake(payload!);
  } catch (error) {
    if (error instanceof CollectiveError && error.code === 'rejected') {
      throw new CollectiveError('rejected', `peer rank ${peerRank} rejected the connection: ${error.reason}`, {
        cause: error,
        reason: error.reason ?? '',
      });
    }
    throw error;
  }
  const problem = handshakeMismatch(theirs, ours, 'right', peerRank);
  if (problem) {
    void conn.closeWith(FrameType.Reject, problem);
    throw new CollectiveError(
      'handshake',
      `the listener at ${conn.peer} is not rank ${peerRank} of this ring: ${problem}`,
    );
  }
  return theirs;
}
