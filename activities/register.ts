import { WithStartWorkflowOperation } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { deploymentPrefix, taskQueueOf } from '../control/task-queues';
import {
  REGISTRY_WORKFLOW_TYPE,
  registerVersionUpdate,
  registryWorkflowId,
  type RegisterInput,
  type RegistryWorkflow,
} from '../workflows/api';
import type { ActivityDeps } from './deps';
import { checkedSpec } from './failures';
import { ActivityClock } from './timing';
import type { Timed } from '../workflows/timings-api';

/**
 * Registers the run's model as the next version of its model, starting the model's registry
 * workflow if this is its first version (update-with-start). The registry remembers which run
 * registered which version, so a retried activity gets the same number back.
 */
export function createRegisterActivity(deps: ActivityDeps) {
  return async function register({
    runId,
    spec: rawSpec,
    datasetFingerprint,
    trained,
    evaluation,
    steps,
    study,
  }: RegisterInput): Promise<{ version: number } & Timed> {
    const clock = new ActivityClock();
    const spec = checkedSpec(rawSpec);
    const startWorkflowOperation = registryStartOperation(spec.model.name);
    const { version } = await deps.client.workflow.executeUpdateWithStart(registerVersionUpdate, {
      startWorkflowOperation,
      args: [
        {
          artifactUri: trained.modelUri,
          metrics: {
            testAccuracy: evaluation.candidate.accuracy,
            testLoss: evaluation.candidate.loss,
            perClassAccuracy: evaluation.candidate.perClassAccuracy,
            task: evaluation.candidate.task,
            values: evaluation.candidate.metrics,
          },
          lineage: {
            runId,
            datasetFingerprint,
            spec,
            parentVersion: evaluation.champion?.version ?? null,
            gitCommit: deps.gitCommit,
            backend: trained.backend.name,
            ...(steps?.length ? { steps } : {}),
            ...(study ? { study } : {}),
          },
          blessed: evaluation.blessed,
          reasons: evaluation.reasons,
        },
      ],
    });
    return { version, timing: clock.timing() };
  };
}

/** Starts `model`'s registry if it is not running (update-with-start), from an activity of the control pool. */
export function registryStartOperation(model: string): WithStartWorkflowOperation<RegistryWorkflow> {
  const { taskQueue } = Context.current().info;
  // Started by name: a worker's activities load no workflow code.
  return new WithStartWorkflowOperation<RegistryWorkflow>(REGISTRY_WORKFLOW_TYPE, {
    workflowId: registryWorkflowId(deploymentPrefix(), model),
    // The registry runs where this activity runs: the control pool.
    taskQueue: taskQueue || taskQueueOf('control'),
    args: [
      {
        model,
        ...(process.env.GANTRY_RECONCILE_INTERVAL ? { reconcileInterval: process.env.GANTRY_RECONCILE_INTERVAL } : {}),
      },
    ],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
}
