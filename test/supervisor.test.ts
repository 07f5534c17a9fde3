import { spawn, type ChildProcess } from 'node:child_process';
import { expect, it } from 'vitest';
import { isProcessAlive } from '../control/embedded-temporal';
import { Supervisor, type StackExit } from '../control/supervisor';
import { killProcess, waitFor } from './helpers/workers';

const backoff = { initialMs: 50, maxMs: 200, resetAfterMs: 5_000, maxFastFailures: 3 };

/** A real child process that lives `ms` milliseconds (forever when undefined), then exits with code 3. */
function child(ms?: number): ChildProcess {
  const script = ms === undefined ? 'setInterval(() => {}, 1000)' : `setTimeout(() => process.exit(3), ${ms})`;
  return spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
}

it('starts a crashed child again after a doubling backoff, and gives up on a crash loop saying why', async () => {
  const exits: StackExit[] = [];
  const started: ChildProcess[] = [];
  let gaveUp: Error | undefined;
  const first = child(100);
  new Supervisor(
    'the flaky thing',
    '/tmp/flaky.log',
    first,
    async () => {
      const next = child(100);
      started.push(next);
      return next;
    },
    { onExit: (e) => exits.push(e), onGiveUp: (_what, error) => (gaveUp = error) },
    (c) => killProcess(c, 'SIGTERM'),
    backoff,
  );
  const error = await waitFor('the supervisor to give up', async () => gaveUp, 20_000, 20);
  expect(error.message).toMatch(/the flaky thing failed 4 times in a row, each within 5 s of starting; gave up/);
  expect(error.message).toMatch(/code 3.*see \/tmp\/flaky\.log/);
  expect(started).toHaveLength(3);
  expect(exits.map((e) => [e.code, e.restarted, e.delayMs])).toEqual([
    [3, true, 50],
    [3, true, 100],
    [3, true, 200],
    [3, false, undefined],
  ]);
});

it('leaves a child stopped on purpose alone, and stop() during a pending restart leaves nothing running', async () => {
  const exits: StackExit[] = [];
  const started: ChildProcess[] = [];
  // Exit code 0 (or SIGTERM/SIGINT): asked to stop, not restarted.
  const polite = spawn(process.execPath, ['-e', 'process.exit(0)'], { stdio: 'ignore' });
  new Supervisor('polite', '-', polite, async () => child(), { onExit: (e) => exits.push(e) }, killProcess, backoff);
  await waitFor('the polite child to end', async () => (exits.length ? true : undefined), 10_000, 20);
  expect(exits).toMatchObject([{ what: 'polite', code: 0, restarted: false }]);

  const long = child();
  const supervisor = new Supervisor(
    'long',
    '-',
    long,
    async () => {
      const next = child();
      started.push(next);
      return next;
    },
    {},
    (c) => killProcess(c, 'SIGTERM'),
    { ...backoff, initialMs: 300 },
  );
  await killProcess(long, 'SIGKILL');
  // Killed: a restart is pending (300 ms); stopping now drops it.
  await supervisor.stop();
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(started).toHaveLength(0);

  // Restarted once, then stopped: the new child is gone too.
  const again = child();
  const restarted = new Supervisor(
    'again',
    '-',
    again,
    async () => {
      const next = child();
      started.push(next);
      return next;
    },
    {},
    (c) => killProcess(c, 'SIGTERM'),
    backoff,
  );
  await killProcess(again, 'SIGKILL');
  await waitFor('the restart', async () => (restarted.restarts === 1 ? true : undefined), 10_000, 20);
  expect(restarted.child).toBe(started[0]);
  await restarted.stop();
  expect(isProcessAlive(started[0]!.pid!)).toBe(false);
});
