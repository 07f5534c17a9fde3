import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The per-attempt secret every rank of a ring proves it holds (handshake.ts), and where it comes from.
 *
 * Why derived and not handed out by the rendezvous: the rendezvous is a Temporal workflow, and
 * whatever it hands out travels in Update results that Temporal keeps in the workflow's history,
 * readable by anyone who can read history (the CLI, the web UI, a support dump), for as long as
 * the history is retained. A workflow also cannot draw real random bytes (its randomness is seeded
 * from the run, so that replay is deterministic). So each trainer derives the secret itself:
 * HMAC-SHA256(worker key, job id, attempt). The worker key never leaves the trainers' hosts, the
 * secret differs for every attempt (a trainer left over from attempt 1 cannot join attempt 2), and
 * nothing secret is logged or stored in history.
 */

export const SECRET_BYTES = 32;
/** Keys shorter than this (in bytes) are refused: they can be guessed. */
export const MIN_KEY_BYTES = 32;

/** HMAC-SHA256(key, "gantry-collective-secret" ‖ job id ‖ attempt): the attempt's 32-byte secret. */
export function deriveAttemptSecret(key: Uint8Array, jobId: string, attempt: number): Buffer {
  if (key.byteLength < MIN_KEY_BYTES)
    throw new TypeError(`the collective key must have at least ${MIN_KEY_BYTES} bytes`);
  // JSON keeps the fields apart whatever characters the job id holds.
  return createHmac('sha256', key)
    .update(JSON.stringify(['gantry-collective-secret', jobId, attempt]))
    .digest();
}

/** Whether two proofs are equal, in time that does not depend on where they differ. */
export function sameProof(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/** Where the worker key lives when $GANTRY_COLLECTIVE_KEY is not set. */
export function defaultKeyFile(): string {
  return process.env.GANTRY_COLLECTIVE_KEY_FILE || path.join(os.homedir(), '.gantry', 'collective.key');
}

/**
 * The worker key: $GANTRY_COLLECTIVE_KEY (at least 32 characters; set it alike on every trainer
 * host of a job), else the key file ($GANTRY_COLLECTIVE_KEY_FILE, default ~/.gantry/collective.key),
 * created with 32 random bytes and mode 0600 on first use. A key file is enough where every
 * trainer of a job runs on one host as one user; across hosts, set the environment variable (or
 * ship the same file). A key file anyone else can read or write is refused.
 */
export function collectiveKey(): Buffer {
  const fromEnv = process.env.GANTRY_COLLECTIVE_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = Buffer.from(fromEnv, 'utf8');
    if (key.length < MIN_KEY_BYTES)
      throw new Error(`GANTRY_COLLECTIVE_KEY must be at least ${MIN_KEY_BYTES} characters (it has ${key.length})`);
    return key;
  }
  return keyFromFile(defaultKeyFile());
}

function keyFromFile(file: string): Buffer {
  if (!fs.existsSync(file)) createKeyFile(file);
  const stat = fs.statSync(file);
  if (!stat.isFile()) throw new Error(`collective key file ${file} is not a regular file`);
  if (stat.size > 4096) throw new Error(`collective key file ${file} is ${stat.size} bytes; a key is ≤ 4096`);
  if ((stat.mode & 0o077) !== 0)
    throw new Error(`collective key file ${file} is readable or writable by others (mode ${modeOf(stat)}); chmod 600`);
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid())
    throw new Error(`collective key file ${file} belongs to uid ${stat.uid}, not this user`);
  const key = fs.readFileSync(file);
  if (key.length < MIN_KEY_BYTES)
    throw new Error(`collective key file ${file} holds ${key.length} bytes; at least ${MIN_KEY_BYTES} are needed`);
  return key;
}

/**
 * Write the key to a private temporary file, then link it into place: link() fails when another
 * trainer won the race, and nobody ever reads a half-written key.
 */
function createKeyFile(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
  fs.writeFileSync(temporary, randomBytes(SECRET_BYTES), { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    fs.rmSync(temporary, { force: true });
  }
}

function modeOf(stat: fs.Stats): string {
  return (stat.mode & 0o777).toString(8).padStart(3, '0');
}
