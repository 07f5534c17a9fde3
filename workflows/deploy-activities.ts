import { proxyActivities } from '@temporalio/workflow';
import type { DeployActivities } from './api';

/**
 * The deploy activities (servers' split, metrics, the registry's reconciliation) as rollouts, experiments and the
 * registry call them: short calls, heartbeating while a server loads, so a worker that dies mid-call is noticed in
 * seconds. The registry retries fewer times: it reconciles on a timer anyway.
 */
export function deployActivities(maximumAttempts = 5): DeployActivities {
  return proxyActivities<DeployActivities>({
    startToCloseTimeout: '3m',
    heartbeatTimeout: '10s',
    retry: { initialInterval: '200ms', maximumInterval: '5s', maximumAttempts },
  });
}

/** The workflow's clock as ISO text (Date.now is deterministic inside a workflow: it reads the task's time). */
export const workflowNow = (): string => new Date(Date.now()).toISOString();
