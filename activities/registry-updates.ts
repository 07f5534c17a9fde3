import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { UpdateDefinition } from '@temporalio/common';
import {
  claimTrafficUpdate,
  concludeUpdate,
  recordEventUpdate,
  releaseTrafficUpdate,
  setServingUpdate,
  type DeployActivities,
} from '../workflows/api';
import type { ActivityDeps } from './deps';
import { registryHandle } from '../control/registry';

/**
 * The registry Updates a rollout or experiment workflow sends (a workflow cannot send an Update
 * itself, so an activity does). A refusal by the registry's validator — another rollout holds the
 * traffic, an unpublished version — is final: retrying would not change the answer.
 */
export function createRegistryUpdateActivities(
  deps: ActivityDeps,
): Pick<DeployActivities, 'claimTraffic' | 'releaseTraffic' | 'setServing' | 'conclude' | 'recordEvent'> {
  async function update<Ret, Arg>(model: string, definition: UpdateDefinition<Ret, [Arg]>, arg: Arg): Promise<Ret> {
    try {
      return await registryHandle(deps.client, model).executeUpdate(definition, { args: [arg] as [Arg] });
    } catch (error) {
      if (error instanceof WorkflowUpdateFailedError) {
        throw ApplicationFailure.nonRetryable(
          `registry of "${model}" refused ${definition.name}: ${error.cause?.message ?? error.message}`,
          'RegistryRefused',
        );
      }
      throw error;
    }
  }
  return {
    claimTraffic: ({ model, request }) => update(model, claimTrafficUpdate, request),
    releaseTraffic: ({ model, owner, note }) => update(model, releaseTrafficUpdate, { owner, note }),
    setServing: ({ model, request }) => update(model, setServingUpdate, request),
    conclude: ({ model, request }) => update(model, concludeUpdate, request),
    recordEvent: ({ model, request }) => update(model, recordEventUpdate, request),
  };
}
