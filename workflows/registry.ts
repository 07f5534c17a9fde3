import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  log,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  claimTrafficUpdate,
  concludeUpdate,
  promoteUpdate,
  publishVersionUpdate,
  recordEventUpdate,
  registerVersionUpdate,
  registryStateQuery,
  releaseTrafficUpdate,
  rollbackUpdate,
  setServingUpdate,
  type RegistryInput,
  type RegistryWorkflow,
  type ServingChange,
} from './api';
import { deployActivities, workflowNow } from './deploy-activities';
import { ModelRegistry } from './registry-state';
import type { ApplyReport, DesiredServing } from './serving-desired';

/**
 * The model registry: one long-lived entity workflow per model name (id `<prefix>-registry:<model>`,
 * see registryWorkflowId in workflows/api.ts), holding every version with its lineage and the
 * aliases that point at them. Its state lives in its history alone; it continues as new before the
 * history grows large. The state and its transitions are a plain class (registry-state.ts); this
 * function wires the update handlers to it, applies the desired serving state it produces to the
 * model servers, and re-applies it on a timer.
 */

export async function registryWorkflow(input: RegistryInput): Promise<void> {
  // Fills in the fields an older run's state lacks, so the next run continues with a complete one.
  const registry = new ModelRegistry(input.model, input.state, workflowNow);
  const { state } = registry;
  const maxHistoryEvents = input.maxHistoryEvents ?? 10_000;
  const reconcileInterval = input.reconcileInterval ?? '10s';
  // Deploy activities run where the registry runs: the control pool.
  const deploy = deployActivities(3);

  // ---- applying the desired serving state: one apply at a time, always the latest state ----
  let applying = false;
  let appliedGeneration = 0;
  const applyLatest = async (): Promise<ApplyReport | null> => {
    await condition(() => !applying);
    applying = true;
    try {
      const desired = state.serving;
      if (!desired) return null;
      const report = await deploy.applyServing({ model: state.model, desired });
      appliedGeneration = Math.max(appliedGeneration, desired.generation);
      registry.applied(report);
      return report;
    } finally {
      applying = false;
    }
  };
  /** Returns once `desired` (or a newer state) has been applied, with the state that now holds. */
  const applied = async (desired: DesiredServing): Promise<ServingChange> => {
    let report: ApplyReport | null = null;
    while (appliedGeneration < desired.generation) report = await applyLatest();
    const apply = report ?? state.lastApply;
    // An apply of this generation or a newer one has just finished, so both are set.
    if (!state.serving || !apply) throw ApplicationFailure.nonRetryable('the desired serving state was never applied');
    return { serving: state.serving, apply, champion: registry.champion() };
  };

  setHandler(registryStateQuery, () => state);
  setHandler(registerVersionUpdate, (request) => registry.register(request));
  setHandler(
    publishVersionUpdate,
    async (request) => {
      const { result, desired } = registry.publish(request);
      if (desired) await applied(desired);
      return result;
    },
    { validator: (request) => registry.checkPublish(request) },
  );
  setHandler(promoteUpdate, (request) => applied(registry.promote(request)), {
    validator: (request) => registry.checkPromote(request),
  });
  setHandler(
    rollbackUpdate,
    async (request) => {
      const { desired, rolledBack } = registry.rollback(request);
      return { ...(await applied(desired)), rolledBack };
    },
    { validator: (request) => registry.checkRollback(request) },
  );
  setHandler(claimTrafficUpdate, (request) => registry.claimTraffic(request), {
    validator: (request) => registry.checkClaimTraffic(request),
  });
  setHandler(releaseTrafficUpdate, async (request) => {
    const desired = registry.releaseTraffic(request);
    return desired ? applied(desired) : null;
  });
  setHandler(setServingUpdate, (request) => applied(registry.setServing(request)), {
    validator: (request) => registry.checkSetServing(request),
  });
  setHandler(concludeUpdate, (request) => applied(registry.conclude(request)), {
    validator: (request) => registry.checkConclude(request),
  });
  setHandler(recordEventUpdate, (request) => registry.recordEvent(request));

  // An entity workflow never finishes. It re-applies the desired serving state every
  // `reconcileInterval` (a restarted or new server gets it back; unchanged servers are only
  // read), and hands its state to a fresh run when its history would otherwise grow large.
  const mustContinue = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxHistoryEvents;
  while (!mustContinue()) {
    await condition(mustContinue, reconcileInterval);
    if (mustContinue() || !state.serving) continue;
    try {
      await applyLatest();
    } catch (error) {
      log.warn('reconcile failed; trying again next interval', { error: (error as Error).message });
    }
  }
  await condition(() => allHandlersFinished() && !applying);
  await continueAsNew<typeof registryWorkflow>({ model: input.model, state, maxHistoryEvents, reconcileInterval });
}
// Activities start it by name with this signature (workflows/api.ts): the two must agree.
registryWorkflow satisfies RegistryWorkflow;
