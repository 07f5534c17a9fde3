import { createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { CollectiveError, FrameType, type FramedSocket } from './frames';
import { SECRET_BYTES, sameProof } from './secret';
import { describeIssues } from '../validation/issues';

/**
 * The first frame on every ring connection says who is calling: `{ jobId, attempt, rank,
 * worldSize, sharedMemory }`. Ports are reused across jobs and attempts, so a trainer left over
 * from a previous attempt (or another job) can reach a listener that is not its ring; checking
 * identity before a single data byte flows turns that into a clear refusal instead of silently
 * mixed gradients.
 *
 * Identity alone is no proof: anyone who can reach the port can claim it. So each side also proves
 * it holds the attempt's secret (secret.ts) with a mutual HMAC-SHA256 challenge:
 *
 *   connecting → Hello    { identity, nonce: Nd }
 *   accepting  → Welcome  { identity, nonce: Na, proof: HMAC(secret, "accept", identity_a, Nd) }
 *   connecting → Proof    { proof: HMAC(secret, "dial", identity_d, Na) }
 *   accepting  → Ready    (empty)
 *
 * Each proof covers the other side's fresh 32-byte nonce (an old handshake replayed does not
 * answer this one's challenge), the prover's rank, attempt, job and world size (a proof made for
 * another rank does not verify) and its role (a challenge reflected back does not either).
 * Proofs are compared with timingSafeEqual. Any failure is a Reject with the reason, then a close.
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

const HEX_32 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 32 bytes as 64 lowercase hex digits');
/** The connecting side's first frame: who it is, and its challenge. */
export const HelloSchema = HandshakeSchema.extend({ nonce: HEX_32 }).strict();
/** The accepting side's answer: who it is, its challenge, and its proof for the Hello's challenge. */
export const WelcomeSchema = HandshakeSchema.extend({ nonce: HEX_32, proof: HEX_32 }).strict();
/** The connecting side's proof for the Welcome's challenge. */
export const ProofSchema = z.object({ proof: HEX_32 }).strict();

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

type Role = 'dial' | 'accept';

/** HMAC-SHA256(secret, role ‖ the prover's identity ‖ the verifier's challenge). */
export function handshakeProof(secret: Uint8Array, role: Role, prover: Handshake, challenge: Buffer): Buffer {
  const identity = [role, prover.jobId, prover.attempt, prover.rank, prover.worldSize, prover.sharedMemory ?? false];
  return createHmac('sha256', secret).update(JSON.stringify(identity)).update(challenge).digest();
}

/** Parse one handshake frame's payload with `schema`; garbage is an Error naming what was wrong. */
export function parseHandshakeFrame<T>(payload: Buffer, schema: z.ZodType<T>, what = 'handshake'): T {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new Error(`${what} payload is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`invalid ${what}: ${describeIssues(parsed.error)}`);
  }
  return parsed.data;
}

/** A Hello, Welcome or plain identity (what the fields say, not yet whether to believe it). */
export function parseHandshake(payload: Buffer): Handshake {
  return parseHandshakeFrame(payload, HandshakeSchema);
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function identityOf(message: Handshake): Handshake {
  const { jobId, attempt, rank, worldSize, sharedMemory } = message;
  return { jobId, attempt, rank, worldSize, ...(sharedMemory === undefined ? {} : { sharedMemory }) };
}

/** Why a proof may fail for a genuine trainer: the one misconfiguration that looks like a stranger. */
const NOT_A_MEMBER =
  '(not a trainer of this attempt, or trainers whose worker keys differ: ' +
  'set GANTRY_COLLECTIVE_KEY alike on every host)';

/**
 * Accepting side: read the caller's Hello, check it is `expectedRank`, answer Welcome with a
 * challenge and our proof, check the caller's proof, answer Ready. On any problem (garbage, wrong
 * identity, a proof that does not verify, silence until `timeoutMs`) the caller gets a Reject
 * with the reason, the connection is closed, and this throws with the reason.
 */
export async function acceptHandshake(
  conn: FramedSocket,
  ours: Handshake,
  secret: Uint8Array,
  expectedRank: number,
  timeoutMs: number,
): Promise<Handshake> {
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  let theirs: Handshake;
  let refusal: string;
  try {
    const hello = parseHandshakeFrame(
      (await conn.receive({ type: FrameType.Hello, tag: 0, what: 'a handshake', timeoutMs: left() }))!,
      HelloSchema,
    );
    theirs = identityOf(hello);
    const problem = handshakeMismatch(theirs, ours, 'left', expectedRank);
    if (problem) {
      void conn.closeWith(FrameType.Reject, problem);
      throw new CollectiveError(
        'handshake',
        `refused a connection from ${conn.peer} claiming rank ${theirs.rank}: ${problem}`,
      );
    }
    const challenge = randomBytes(SECRET_BYTES);
    const proof = handshakeProof(secret, 'accept', ours, Buffer.from(hello.nonce, 'hex'));
    conn.send(FrameType.Welcome, 0, json({ ...ours, nonce: challenge.toString('hex'), proof: proof.toString('hex') }));
    const answer = parseHandshakeFrame(
      (await conn.receive({ type: FrameType.Proof, tag: 0, what: 'a handshake proof', timeoutMs: left() }))!,
      ProofSchema,
      'handshake proof',
    );
    if (!sameProof(Buffer.from(answer.proof, 'hex'), handshakeProof(secret, 'dial', theirs, challenge))) {
      refusal = `rank ${theirs.rank}'s proof of membership does not verify ${NOT_A_MEMBER}`;
    } else {
      conn.send(FrameType.Ready, 0);
      return theirs;
    }
  } catch (error) {
    if (error instanceof CollectiveError && error.code === 'handshake') throw error;
    refusal = (error as Error).message;
    void conn.closeWith(FrameType.Reject, refusal);
    throw new CollectiveError('handshake', `refused a connection from ${conn.peer}: ${refusal}`, { cause: error });
  }
  void conn.closeWith(FrameType.Reject, refusal);
  throw new CollectiveError('handshake', `refused a connection from ${conn.peer}: ${refusal}`);
}

/**
 * Connecting side: send Hello, wait for Welcome from `peerRank` and check its proof, send ours,
 * wait for Ready. A Reject surfaces as `peer rank N rejected the connection: <reason>` (code
 * 'rejected'); a Welcome from the wrong peer, or one whose proof does not verify, is refused here
 * in turn (code 'handshake').
 */
export async function offerHandshake(
  conn: FramedSocket,
  ours: Handshake,
  secret: Uint8Array,
  peerRank: number,
  timeoutMs: number,
): Promise<Handshake> {
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const challenge = randomBytes(SECRET_BYTES);
  conn.send(FrameType.Hello, 0, json({ ...ours, nonce: challenge.toString('hex') }));
  let theirs: Handshake;
  try {
    const welcome = parseHandshakeFrame(
      (await conn.receive({
        type: FrameType.Welcome,
        tag: 0,
        what: `rank ${peerRank}'s answer to the handshake`,
        timeoutMs: left(),
      }))!,
      WelcomeSchema,
    );
    theirs = identityOf(welcome);
    const problem =
      handshakeMismatch(theirs, ours, 'right', peerRank) ??
      (sameProof(Buffer.from(welcome.proof, 'hex'), handshakeProof(secret, 'accept', theirs, challenge))
        ? undefined
        : `its proof of membership does not verify ${NOT_A_MEMBER}`);
    if (problem) {
      void conn.closeWith(FrameType.Reject, problem);
      throw new CollectiveError(
        'handshake',
        `the listener at ${conn.peer} is not rank ${peerRank} of this ring: ${problem}`,
      );
    }
    const proof = handshakeProof(secret, 'dial', ours, Buffer.from(welcome.nonce, 'hex'));
    conn.send(FrameType.Proof, 0, json({ proof: proof.toString('hex') }));
    await conn.receive({
      type: FrameType.Ready,
      tag: 0,
      what: `rank ${peerRank}'s word that the link is formed`,
      byteLength: 0,
      timeoutMs: left(),
    });
  } catch (error) {
    if (error instanceof CollectiveError && error.code === 'rejected') {
      throw new CollectiveError('rejected', `peer rank ${peerRank} rejected the connection: ${error.reason}`, {
        cause: error,
        reason: error.reason ?? '',
      });
    }
    throw error;
  }
  return theirs;
}
