import type { z } from 'zod';
import { describeIssues } from '../validation/issues';

/** An error the user caused (a bad flag, spec or name): printed without a stack, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/** A run or command that failed for a reason other than its input: exit code 1. */
export class CommandFailed extends Error {
  readonly exitCode = 1;
}

/** Bad flags, each named as the user typed it (`--min-feedback`), not by its option key. */
export function badFlags(error: z.ZodError): UsageError {
  const flag = (path: readonly PropertyKey[]) => `--${String(path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  return new UsageError(describeIssues(error, { name: flag }));
}
