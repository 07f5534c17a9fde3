import { ActivityFailure, ChildWorkflowFailure } from '@temporalio/workflow';

/** The message that says what went wrong: an activity's or child's own failure, not "Activity task failed". */
export function failureMessage(error: unknown): string {
  let current = error as Error;
  while ((current instanceof ActivityFailure || current instanceof ChildWorkflowFailure) && current.cause)
    current = current.cause;
  return current.message;
}
