import { ApplicationFailure } from '@temporalio/common';
import { DatasetError } from '../data/errors';
import { PipelineSpecError, validatePipeline } from '../pipelines/define';
import type { PipelineSpec } from '../pipelines/spec';
import { ReplicasDiverged, TrainingDiverged } from '../training/diverged';

/**
 * Errors that no retry can fix become non-retryable failures with a type the workflow and the
 * CLI can read: bad data, a bad spec, a training that diverged. Anything else stays retryable.
 */
export function asActivityFailure(error: unknown): unknown {
  if (error instanceof DatasetError) return ApplicationFailure.nonRetryable(error.message, 'DatasetError');
  if (error instanceof PipelineSpecError) return ApplicationFailure.nonRetryable(error.message, 'InvalidSpec');
  if (error instanceof TrainingDiverged) return ApplicationFailure.nonRetryable(error.message, 'TrainingDiverged');
  if (error instanceof ReplicasDiverged) return ApplicationFailure.nonRetryable(error.message, 'ReplicasDiverged');
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
