import type { ChildProcess } from 'node:child_process';

/**
 * Keeps one child of the local stack running: a child that ends without being asked to is started
 * again (the same way: same ports, same files) after a backoff, and a child that cannot stay up
 * is given up on, so that `gantry dev` can say why and exit instead of spinning.
 */

/** A child of the stack that ended while the stack was up. */
export interface StackExit {
  what: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  logFile: string;
  /** Whether the stack will start it again; false when it was asked to stop or is given up on. */
  restarted: boolean;
  /** When restarted: how long the stack waits first. */
  delayMs?: number;
}

export interface SupervisorEvents {
  /** A child ended while the stack was up. */
  onExit?: (exit: StackExit) => void;
  /** A child was started again and is up (pid of the new process). */
  onRestarted?: (what: string, pid: number | undefined, restarts: number) => void;
  /** A child failed too often to keep trying; the stack should stop. */
  onGiveUp?: (what: string, error: Error) => void;
}

export interface Backoff {
  /** Wait before the first restart. */
  initialMs: number;
  /** The wait doubles up to this. */
  maxMs: number;
  /** A child up this long has recovered: the next failure waits initialMs again and counts as the first. */
  resetAfterMs: number;
  /** Failures in a row (each a child that died before resetAfterMs, or a start that failed) before giving up. */
  maxFastFailures: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 10_000, resetAfterMs: 60_000, maxFastFailures: 5 };

/**
 * Exit code 0, SIGINT, SIGTERM: asked to stop (Ctrl-C reaches the whole process group, and a child
 * told to stop by its user should stay stopped). Anything else — SIGKILL, an abort, exit 1 — is a crash.
 */
export function crashed(code: number | null, signal: NodeJS.Signals | null): boolean {
  return code !== 0 && signal !== 'SIGINT' && signal !== 'SIGTERM';
}

export class Supervisor {
  private current: ChildProcess;
  private startedAt = Date.now();
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private launching: Promise<void> | undefined;
  private stopped = false;
  restarts = 0;

  constructor(
    readonly what: string,
    readonly logFile: string,
    first: ChildProcess,
    /** Starts the child again; resolves once it is up, or rejects with why it could not start. */
    private readonly relaunch: () => Promise<ChildProcess>,
    private readonly events: SupervisorEvents,
    private readonly stopChild: (child: ChildProcess) => Promise<void>,
    private readonly backoff: Backoff = DEFAULT_BACKOFF,
  ) {
    this.current = first;
    this.watch(first);
  }

  get child(): ChildProcess {
    return this.current;
  }

  private watch(child: ChildProcess): void {
    child.once('exit', (code, signal) => {
      if (this.stopped || child !== this.current) return;
      if (!crashed(code, signal)) {
        this.events.onExit?.({ what: this.what, code, signal, logFile: this.logFile, restarted: false });
        return;
      }
      if (Date.now() - this.startedAt >= this.backoff.resetAfterMs) this.failures = 0;
      this.failures++;
      if (this.failures > this.backoff.maxFastFailures) {
        this.events.onExit?.({ what: this.what, code, signal, logFile: this.logFile, restarted: false });
        this.giveUp(`it exited (code ${code}, signal ${signal})`);
        return;
      }
      const delayMs = this.delay();
      this.events.onExit?.({ what: this.what, code, signal, logFile: this.logFile, restarted: true, delayMs });
      this.schedule(delayMs);
    });
  }

  private delay(): number {
    return Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** (this.failures - 1));
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.launching = this.launch().finally(() => (this.launching = undefined));
    }, delayMs);
  }

  private async launch(): Promise<void> {
    let child: ChildProcess;
    try {
      child = await this.relaunch();
    } catch (error) {
      if (this.stopped) return;
      this.failures++;
      if (this.failures > this.backoff.maxFastFailures) {
        this.giveUp((error as Error).message);
        return;
      }
      this.schedule(this.delay());
      return;
    }
    if (this.stopped) {
      await this.stopChild(child);
      return;
    }
    this.current = child;
    this.startedAt = Date.now();
    this.restarts++;
    this.watch(child);
    // It may have died between being up and being watched.
    if (child.exitCode !== null || child.signalCode !== null) child.emit('exit', child.exitCode, child.signalCode);
    else this.events.onRestarted?.(this.what, child.pid, this.restarts);
  }

  private giveUp(why: string): void {
    this.stopped = true;
    const failures = this.backoff.maxFastFailures + 1;
    this.events.onGiveUp?.(
      this.what,
      new Error(
        `${this.what} failed ${failures} times in a row, each within ${this.backoff.resetAfterMs / 1000} s ` +
          `of starting; gave up (last: ${why}); see ${this.logFile}`,
      ),
    );
  }

  /** No more restarts from now on; a pending one is dropped. The child is left running. */
  halt(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Stops supervising (see halt) and stops the child. */
  async stop(): Promise<void> {
    this.halt();
    await this.launching;
    await this.stopChild(this.current);
  }
}
