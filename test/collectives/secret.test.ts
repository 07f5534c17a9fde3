import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { collectiveKey, deriveAttemptSecret } from '../../collectives';

/** The worker key and the per-attempt secret derived from it (collectives/secret.ts). */

const saved = { key: process.env.GANTRY_COLLECTIVE_KEY, file: process.env.GANTRY_COLLECTIVE_KEY_FILE };
const dirs: string[] = [];
afterEach(() => {
  for (const [name, value] of [
    ['GANTRY_COLLECTIVE_KEY', saved.key],
    ['GANTRY_COLLECTIVE_KEY_FILE', saved.file],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function keyFileIn(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-key-'));
  dirs.push(dir);
  delete process.env.GANTRY_COLLECTIVE_KEY;
  process.env.GANTRY_COLLECTIVE_KEY_FILE = path.join(dir, 'sub', 'collective.key');
  return process.env.GANTRY_COLLECTIVE_KEY_FILE;
}

it('derives a different 32-byte secret for every job and attempt, the same on every trainer', () => {
  const key = Buffer.alloc(32, 1);
  const a1 = deriveAttemptSecret(key, 'job-a', 1);
  expect(a1.length).toBe(32);
  expect(deriveAttemptSecret(Buffer.alloc(32, 1), 'job-a', 1).equals(a1)).toBe(true);
  expect(deriveAttemptSecret(key, 'job-a', 2).equals(a1)).toBe(false);
  expect(deriveAttemptSecret(key, 'job-b', 1).equals(a1)).toBe(false);
  // Fields cannot run into each other: job "a1" attempt 1 is not job "a" attempt 11.
  expect(deriveAttemptSecret(key, 'a1', 1).equals(deriveAttemptSecret(key, 'a', 11))).toBe(false);
  expect(deriveAttemptSecret(Buffer.alloc(32, 2), 'job-a', 1).equals(a1)).toBe(false);
  expect(() => deriveAttemptSecret(Buffer.alloc(8), 'job-a', 1)).toThrow('at least 32 bytes');
});

it('takes the key from $GANTRY_COLLECTIVE_KEY, refusing a short one', () => {
  process.env.GANTRY_COLLECTIVE_KEY = 'k'.repeat(40);
  expect(collectiveKey().toString()).toBe('k'.repeat(40));
  process.env.GANTRY_COLLECTIVE_KEY = 'short';
  expect(() => collectiveKey()).toThrow('GANTRY_COLLECTIVE_KEY must be at least 32 characters (it has 5)');
});

it('creates a private key file on first use, reuses it, and refuses one others can read', () => {
  const file = keyFileIn();
  const first = collectiveKey();
  expect(first.length).toBe(32);
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(collectiveKey().equals(first)).toBe(true);
  expect(fs.readdirSync(path.dirname(file))).toEqual(['collective.key']); // no temporary left behind

  fs.chmodSync(file, 0o644);
  expect(() => collectiveKey()).toThrow(`collective key file ${file} is readable or writable by others (mode 644)`);
  fs.chmodSync(file, 0o600);
  fs.writeFileSync(file, 'short');
  expect(() => collectiveKey()).toThrow(`collective key file ${file} holds 5 bytes; at least 32 are needed`);
});
