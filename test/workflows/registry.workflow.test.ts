import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import {
  claimTrafficUpdate,
  concludeUpdate,
  promoteUpdate,
  publishVersionUpdate,
  registerVersionUpdate,
  registryStateQuery,
  releaseTrafficUpdate,
  rollbackUpdate,
  setServingUpdate,
} from '../../workflows/api';
import { registryWorkflow } from '../../workflows/registry';
import { canaryLayout, championOnly } from '../../workflows/serving-desired';
import { registerRequest } from '../helpers/registry';
import { FakeDeploy, uniqueName, useTimeSkipping, withWorker } from './time-skipping';

/**
 * The registry's serving decisions on the time-skipping server, with the deploy activities faked:
 * who may steer a model's traffic, what a rollout's conclusion and a rollback make the servers
 * serve, and the reconcile timer that re-applies the desired state to every server.
 */

const env = useTimeSkipping();

/** A registry of its own with versions 1 and 2 published, v1 the champion; `body` runs while its worker does. */
async function withRegistry<T>(
  deploy: FakeDeploy,
  reconcileInterval: string,
  body: (registry: WorkflowHandle<typeof registryWorkflow>) => Promise<T>,
): Promise<T> {
  const taskQueue = uniqueName('registry');
  return withWorker(env(), taskQueue, deploy.activities, async () => {
    const registry = await env().client.workflow.start(registryWorkflow, {
      taskQueue,
      workflowId: uniqueName('registry'),
      args: [{ model: 'coats', reconcileInterval }],
    });
    try {
      for (const [version, alias] of [
        [1, 'champion'],
        [2, null],
      ] as const) {
        await registry.executeUpdate(registerVersionUpdate, { args: [registerRequest(`run-${version}`)] });
        await registry.executeUpdate(publishVersionUpdate, {
          args: [{ version, publishedPath: `/models/coats/${version}`, alias }],
        });
      }
      return await body(registry);
    } finally {
      await registry.terminate('test over');
    }
  });
}

const applied = (deploy: FakeDeploy) => deploy.named('applyServing').map((i) => i.desired);

describe('registry workflow (time-skipping)', () => {
  it('lets one rollout at a time steer the traffic, and serves what its conclusion or a rollback decides', async () => {
    const deploy = new FakeDeploy();
    await withRegistry(deploy, '1h', async (registry) => {
      expect(applied(deploy).map((d) => d.split)).toEqual([championOnly(1, 'champion').split]);

      const owner = 'rollout-a';
      await registry.executeUpdate(claimTrafficUpdate, { args: [{ owner, kind: 'rollout', version: 2 }] });
      // Claiming again is idempotent for the holder; anyone else is refused, and so is moving the champion.
      await registry.executeUpdate(claimTrafficUpdate, { args: [{ owner, kind: 'rollout', version: 2 }] });
      await expect(
        registry.executeUpdate(claimTrafficUpdate, {
          args: [{ owner: 'experiment-b', kind: 'experiment', version: null }],
        }),
      ).rejects.toThrow(WorkflowUpdateFailedError);
      await expect(
        registry.executeUpdate(setServingUpdate, {
          args: [{ owner: 'experiment-b', layout: canaryLayout(1, 2, 50, 'champion'), note: 'not mine' }],
        }),
      ).rejects.toThrow(WorkflowUpdateFailedError);

      const step = await registry.executeUpdate(setServingUpdate, {
        args: [{ owner, layout: canaryLayout(1, 2, 25, 'champion'), note: 'step 1' }],
      });
      expect(step.serving.split).toEqual(canaryLayout(1, 2, 25, 'champion').split);
      expect(step.apply.servers.map((s) => s.ok)).toEqual([true]);

      const promoted = await registry.executeUpdate(concludeUpdate, {
        args: [{ owner, candidate: 2, outcome: 'promoted', reasons: ['all steps passed'] }],
      });
      expect(promoted.champion).toBe(2);
      expect(promoted.serving.split).toEqual(championOnly(2, 'champion').split);
      let state = await registry.query(registryStateQuery);
      expect(state.trafficOwner).toBeNull();
      expect(state.aliases.champion).toBe(2);

      // Back to the previous champion by hand; the version rolled back from is marked.
      const rolledBack = await registry.executeUpdate(rollbackUpdate, { args: [{ reason: 'alerts' }] });
      expect(rolledBack).toMatchObject({ champion: 1, rolledBack: 2 });
      state = await registry.query(registryStateQuery);
      expect(state.versions.find((v) => v.version === 2)?.rolledBack?.reasons).toEqual(['alerts']);
      expect(applied(deploy).map((d) => d.note)).toEqual([
        'champion v1',
        'step 1',
        'champion v2 (rollout promoted it)',
        'champion v1 (rolled back from v2)',
      ]);
    });
  });

  it(
    'keeps the champion after a rolled-back rollout; ' + 'an experiment’s release serves the champion again',
    async () => {
      const deploy = new FakeDeploy();
      await withRegistry(deploy, '1h', async (registry) => {
        await registry.executeUpdate(claimTrafficUpdate, {
          args: [{ owner: 'rollout-c', kind: 'rollout', version: 2 }],
        });
        const concluded = await registry.executeUpdate(concludeUpdate, {
          args: [{ owner: 'rollout-c', candidate: 2, outcome: 'rolled-back', reasons: ['error rate'] }],
        });
        expect(concluded.champion).toBe(1);
        expect(concluded.serving.note).toBe('champion v1 (v2 rolled back)');
        // A rolled-back version can be promoted by hand later, which clears the mark.
        const promoted = await registry.executeUpdate(promoteUpdate, { args: [{ version: 2, reason: 'fixed' }] });
        expect(promoted.champion).toBe(2);

        await registry.executeUpdate(claimTrafficUpdate, {
          args: [{ owner: 'experiment-d', kind: 'experiment', version: null }],
        });
        // Only the holder's release counts.
        expect(await registry.executeUpdate(releaseTrafficUpdate, { args: [{ owner: 'someone-else' }] })).toBeNull();
        const released = await registry.executeUpdate(releaseTrafficUpdate, {
          args: [{ owner: 'experiment-d', note: 'experiment over' }],
        });
        expect(released?.serving).toMatchObject({ note: 'experiment over', split: championOnly(2, 'champion').split });
        expect((await registry.query(registryStateQuery)).versions[1]?.rolledBack).toBeNull();
      });
    },
  );

  it('re-applies the desired serving state every reconcile interval, unchanged', async () => {
    const deploy = new FakeDeploy();
    await withRegistry(deploy, '10m', async (registry) => {
      const before = applied(deploy).length;
      await env().sleep('35m');
      const generations = applied(deploy).map((d) => d.generation);
      expect(generations.length - before).toBe(3);
      expect(new Set(generations.slice(before))).toEqual(new Set([generations[before - 1]]));
      const state = await registry.query(registryStateQuery);
      expect(state.lastApply?.generation).toBe(state.serving?.generation);
    });
  });
});
