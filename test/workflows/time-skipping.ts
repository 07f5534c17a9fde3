import { randomUUID } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Workflow } from '@temporalio/common';
import { afterAll, beforeAll, inject } from 'vitest';
import type { DeployActivities, ServingMeasurement } from '../../workflows/api';
import { resolveTemporalTestServer } from '../../control/temporal-binary';
import type { VersionWindow } from '../../workflows/canary-analysis';
import type { ApplyReport } from '../../workflows/serving-desired';
import { installQuietRuntime } from '../helpers/quiet-runtime';

/**
 * Workflow tests on Temporal's time-skipping test server: the workflow runs for real (the run's
 * workflow bundle from the global setup), its activities are in-memory fakes, and timers fire as
 * soon as nothing else is pending — a rollout with minute-long bakes finishes in seconds.
 */

export function startTimeSkipping(): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  return TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: resolveTemporalTestServer() } },
  });
}

/** The file's time-skipping server, started before its tests and torn down after them; call the getter in a test. */
export function useTimeSkipping(): () => TestWorkflowEnvironment {
  let env: TestWorkflowEnvironment | undefined;
  beforeAll(async () => {
    env = await startTimeSkipping();
  });
  afterAll(async () => {
    await env?.teardown();
  });
  return () => env!;
}

/** A task queue and workflow ids of its own for each test: nothing is shared between tests. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A worker on its own task queue with the given activities, running while `body` runs. */
export async function withWorker<T>(
  env: TestWorkflowEnvironment,
  taskQueue: string,
  activities: object,
  body: () => Promise<T>,
): Promise<T> {
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    activities,
  });
  return worker.runUntil(body());
}

/** Runs `workflow` on `input` to its end, with `deploy`'s activities on a task queue of its own. */
export function runWithFakeDeploy<W extends (input: any) => Promise<unknown>>(
  env: TestWorkflowEnvironment,
  workflow: W,
  deploy: FakeDeploy,
  input: Parameters<W>[0],
): Promise<Awaited<ReturnType<W>>> {
  const taskQueue = uniqueName(workflow.name);
  return withWorker(env, taskQueue, deploy.activities, () =>
    env.client.workflow.execute(workflow as Workflow, {
      taskQueue,
      workflowId: uniqueName(workflow.name),
      args: [input],
    }),
  ) as Promise<Awaited<ReturnType<W>>>;
}

/** A version's traffic window with `requests` requests, `errors` of them failed, and feedback accuracy. */
export function window(requests: number, { errors = 0, accuracy = 0.9, labelled = 200, p99Ms = 20 } = {}) {
  const correct = Math.round(labelled * accuracy);
  return {
    requests,
    errors,
    errorRate: requests ? errors / requests : 0,
    p99Ms,
    p90Ms: p99Ms / 2,
    feedback: { labelled, correct, accuracy: labelled ? correct / labelled : null },
    classCounts: [requests / 2, requests / 2],
  } satisfies VersionWindow;
}

/**
 * The deploy activities (DeployActivities) in memory: every call is recorded, and what the
 * servers measure comes from `measure`, which the test can change while the workflow runs.
 */
export class FakeDeploy {
  readonly calls: { name: string; input: any }[] = [];
  measure: () => Pick<ServingMeasurement, 'versions' | 'shadow'> = () => ({ versions: {}, shadow: {} });
  servers = ['http://server-a:8501'];

  private record(name: string, input: unknown) {
    this.calls.push({ name, input });
  }

  named(name: string): any[] {
    return this.calls.filter((c) => c.name === name).map((c) => c.input);
  }

  /** The registry events the workflow recorded, as "phase action" messages. */
  events(): string[] {
    return this.named('recordEvent').map((i) => i.request.message as string);
  }

  /** Typed as the real interface, so a change to the activities' contract fails the type-check here. */
  readonly activities: DeployActivities = {
    applyServing: async (input: any): Promise<ApplyReport> => {
      this.record('applyServing', input);
      return {
        generation: input.desired.generation,
        servers: this.servers.map((url) => ({ url, ok: true, changed: [] })),
      };
    },
    servingServers: async () => this.servers,
    measureServing: async (input: { model: string; since: unknown }): Promise<ServingMeasurement> => {
      this.record('measureServing', input);
      return {
        takenAt: new Date().toISOString(),
        servers: this.servers.map((url) => ({ url, ok: true })),
        snapshot: { taken: this.named('measureServing').length },
        ...this.measure(),
      };
    },
    claimTraffic: async (input: any) => {
      this.record('claimTraffic', input);
      return { id: input.request.owner, kind: input.request.kind, version: input.request.version, since: 'now' };
    },
    releaseTraffic: async (input: unknown) => {
      this.record('releaseTraffic', input);
      return null;
    },
    setServing: async (input: unknown) => {
      this.record('setServing', input);
      return {} as never;
    },
    conclude: async (input: unknown) => {
      this.record('conclude', input);
      return {} as never;
    },
    recordEvent: async (input: unknown) => {
      this.record('recordEvent', input);
    },
  };
}
