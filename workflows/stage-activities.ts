import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { PipelineSpec } from '../pipelines/spec';
import type { ControlActivities, TrainActivities } from './api';

/**
 * How a run reaches Gantry's stage activities: the control pool's light ones and the train pool's trainer, with
 * their timeouts and retry policies. One place, so the retrain workflow and users' own workflows (stages.ts) run
 * the stages alike.
 */

export function controlActivities(taskQueue: string): ControlActivities {
  return proxyActivities<ControlActivities>({
    taskQueue,
    startToCloseTimeout: '30m',
    heartbeatTimeout: '2m',
    retry: { initialInterval: '1s', maximumAttempts: 5, nonRetryableErrorTypes: ['DatasetError', 'InvalidSpec'] },
  });
}

export function trainActivities(taskQueue: string, spec: PipelineSpec): TrainActivities {
  return proxyActivities<TrainActivities>({
    taskQueue,
    startToCloseTimeout: '7d',
    heartbeatTimeout: spec.train.heartbeatTimeout,
    // A cancelled run waits until its trainer has really stopped, so no orphan keeps training.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '30s',
      maximumAttempts: spec.train.maxAttempts,
      nonRetryableErrorTypes: ['DatasetError', 'InvalidSpec', 'TrainingDiverged'],
    },
  });
}
