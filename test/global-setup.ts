import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../control/embedded-temporal';
import { gantryHome } from '../control/home';
import { WORKFLOWS_PATH } from '../workers/pool-worker';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundlePath: string;
  }
}

/**
 * One real Temporal server (the CLI's dev server, on a free loopback port, with its own state
 * folder) and one workflow bundle for the whole test run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'gantry-test-server-'));
  const home = gantryHome({ GANTRY_HOME: root });
  let server: EmbeddedTemporal | undefined;
  try {
    server = await startEmbeddedTemporal(home, { port: 'free', headless: true });
    const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
    const workflowBundlePath = path.join(root, 'workflow-bundle.js');
    await writeFile(workflowBundlePath, code);
    project.provide('temporalAddress', server.address);
    project.provide('workflowBundlePath', workflowBundlePath);
  } catch (error) {
    await server?.stop();
    throw error;
  }
  return async () => {
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  };
}

const quietLogger = {
  log() {},
  trace() {},
  debug() {},
  info() {},
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};
