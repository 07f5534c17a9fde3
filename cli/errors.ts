/** An error the user caused (a bad flag, spec or name): printed without a stack, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/** A run or command that failed for a reason other than its input: exit code 1. */
export class CommandFailed extends Error {
  readonly exitCode = 1;
}
