import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * One state file, one server: a `<state file>.lock` beside it holds the owner's pid. A second
 * server on the same file refuses to start; a lock whose pid is gone (a crash, a kill -9) is stale
 * and taken over. Locks held by this process are remembered too, so two servers in one process
 * (tests, embedding) cannot share a file either.
 */

const heldHere = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of `stateFile`; resolves to its release. Throws naming the file and the holder's pid. */
export async function lockStateFile(stateFile: string): Promise<() => Promise<void>> {
  const lock = `${path.resolve(stateFile)}.lock`;
  await mkdir(path.dirname(lock), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      heldHere.add(lock);
      return async () => {
        if (!heldHere.delete(lock)) return;
        await rm(lock, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new Error(`state file ${stateFile}: cannot take its lock ${lock}: ${(error as Error).message}`);
    }
    // The lock file is tiny; more than 32 bytes is not ours and is read as no pid at all.
    const text = (await readFile(lock, 'utf8').catch(() => '')).slice(0, 32).trim();
    const pid = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
    const holder = heldHere.has(lock) ? process.pid : pid;
    if (Number.isSafeInteger(holder) && holder > 0 && (holder === process.pid ? heldHere.has(lock) : alive(holder)))
      throw new Error(
        `state file ${stateFile} is in use by another model server (pid ${holder}, lock ${lock}); ` +
          'two servers never share one state file: give this one its own --state-file',
      );
    await rm(lock, { force: true });
  }
  throw new Error(`state file ${stateFile}: its lock ${lock} keeps coming back; is another server starting?`);
}
