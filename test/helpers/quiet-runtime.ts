import { DefaultLogger, Runtime } from '@temporalio/worker';

/** Workers inside a test process log warnings and errors only; their info lines drown the report. */
export function installQuietRuntime(): void {
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // Already installed in this process.
  }
}
