import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { gantryHome, type GantryHome } from '../../control/home';

/**
 * A fresh Gantry environment for one test file: its own GANTRY_HOME and its own task queues on
 * the shared test server, so files never see each other's runs, models or workers.
 */
export interface TestEnv {
  home: GantryHome;
  address: string;
  queuePrefix: string;
  /** Environment for child processes (CLI, worker processes) that must join this test's world. */
  env: NodeJS.ProcessEnv;
}

export async function createTestEnv(name: string): Promise<TestEnv> {
  const root = await mkdtemp(path.join(os.tmpdir(), `gantry-${name}-`));
  const address = inject('temporalAddress');
  const queuePrefix = `test-${name}-${randomBytes(3).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GANTRY_HOME: root,
    TEMPORAL_ADDRESS: address,
    TEMPORAL_NAMESPACE: 'default',
    GANTRY_TASK_QUEUE_PREFIX: queuePrefix,
    GANTRY_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
  };
  // This process (the test file's fork) joins the same world.
  Object.assign(process.env, {
    GANTRY_HOME: root,
    TEMPORAL_ADDRESS: address,
    TEMPORAL_NAMESPACE: 'default',
    GANTRY_TASK_QUEUE_PREFIX: queuePrefix,
    GANTRY_WORKFLOW_BUNDLE: env.GANTRY_WORKFLOW_BUNDLE,
  });
  return { home: gantryHome(env), address, queuePrefix, env };
}
