import { ApplicationFailure } from '@temporalio/common';
import { DatasetError } from '../data/errors';
import { PipelineSpecError, validatePipeline } from '../pipelines/define';
import type { PipelineSpec } from '../pipelines/spec';

/**
 * Errors that no retry can fix become non-retryable failures with a type the workflow and the
 * CLI can read: bad data, a bad spec. Anything else stays retryable.
 */
export function asActivityFailure(error: unknown): unknown {
  if (error instanceof DatasetError) return ApplicationFailure.nonRetryable(error.message, 'DatasetError');
  if (error instanceof PipelineSpecError) return ApplicationFailure.nonRetryable(error.message, 'InvalidSpec');
  return error;
}

/** Activities re-check the spec they receive: the workflow input is a boundary too. */
export function checkedSpec(spec: unknown): PipelineSpec {
  try {
    return validatePipeline(spec);
  } catch (error) {
    throw asActivityFailure(error);
  }
}
