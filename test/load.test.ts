import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadSummary } from '../control/load/generator';
import { ServingClient } from '../serving/client';
import { diffSnapshots, servingSnapshot } from '../serving/metrics-snapshot';
import { windowStats } from '../serving/metrics-window';
import { stableUnit } from '../serving/router';
import { startModelServer, type ModelServer } from '../serving/server';
import { selectBackend } from '../engine/backend';
import { gantry } from './helpers/cli';
import { mlpFiles, publish, removeDir, tempDir } from './serving/helpers';

/**
 * `gantry load` as a user runs it, in its own process, against a real model server with a 50/50
 * split between two versions: the server counts the requests it sent, sticky per simulated user,
 * and a label for every answer; bad input is refused with exit code 2 naming the flag.
 */

const TOKEN = 'load-test-admin-token-0123456789';
const FEEDBACK_TOKEN = 'load-test-feedback-token-0123456789';
const MODEL = 'fashion';
let base: string;
let home: string;
let server: ModelServer;
let client: ServingClient;
let url: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  await selectBackend();
  base = await tempDir('load');
  home = await tempDir('load-home');
  await publish(base, MODEL, 1, await mlpFiles(21));
  await publish(base, MODEL, 2, await mlpFiles(22));
  server = await startModelServer({
    modelConfig: {
      model_config_list: {
        config: [
          { name: MODEL, base_path: path.join(base, MODEL), model_version_policy: { all: {} }, version_labels: {} },
        ],
      },
    },
    restPort: 0,
    grpcPort: null,
    pollIntervalMs: 50,
    adminToken: TOKEN,
    // Feedback only from the load generator's token: a `gantry load --feedback` without it is refused.
    feedbackTokens: [{ name: 'loadgen', token: FEEDBACK_TOKEN }],
  });
  url = `http://127.0.0.1:${server.restPort}`;
  client = new ServingClient({ url, adminToken: TOKEN });
  await client.setTraffic(MODEL, {
    split: [
      { version: 1, weight: 50 },
      { version: 2, weight: 50 },
    ],
  });
  // Its own GANTRY_HOME, so no servers.json of the developer's is read; no GANTRY_SERVERS unless a test sets it.
  env = { ...process.env, GANTRY_HOME: home, GANTRY_SERVERS: '' };
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
  await removeDir(home);
});

const snapshot = async () => servingSnapshot(await client.metrics(), MODEL);

describe('gantry load', () => {
  it('sends about rps × duration requests, sticky per client, with a label for every answer', async () => {
    const before = await snapshot();
    const run = await gantry(
      ['load', MODEL, '--server', url, '--rps', '40', '--duration', '2s', '--feedback', '--clients', '5', '--json'],
      // A token file's line (NAME:TOKEN) works as the client's token too.
      { ...env, GANTRY_FEEDBACK_TOKEN: `loadgen:${FEEDBACK_TOKEN}` },
    );
    expect(run.stderr).toContain(`gantry load: ${MODEL} on ${url} at 40 rps for 2s, 5 clients, with feedback`);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout) as LoadSummary;
    const window = diffSnapshots(await snapshot(), before);
    const stats = windowStats(window);

    // 40 rps for 2 s is 80 requests; a busy machine may send fewer, never more.
    expect(summary.sent).toBeGreaterThanOrEqual(48);
    expect(summary.sent).toBeLessThanOrEqual(80);
    expect(summary.stoppedBy).toBe('duration');
    expect(summary.errors).toBe(0);
    expect(summary.answered).toBe(summary.sent);
    const served = Object.values(stats).reduce((n, s) => n + s.requests, 0) + window.unrouted.requests;
    expect(served).toBe(summary.sent);

    // Request i comes from user i mod 5, whose key's hash picks one version for all its requests.
    const expected: Record<string, number> = {};
    for (let i = 0; i < summary.sent; i++) {
      const version = stableUnit(MODEL, `user-${i % 5}`) < 0.5 ? '1' : '2';
      expected[version] = (expected[version] ?? 0) + 1;
    }
    for (const v of ['1', '2']) {
      expect(stats[v]?.requests ?? 0).toBe(expected[v] ?? 0);
      expect(summary.versions[v]?.answered ?? 0).toBe(expected[v] ?? 0);
    }

    // Feedback: one label per answer, all accepted, and the server's accuracy is the client's.
    expect(summary.feedback).toMatchObject({
      sent: summary.answered,
      accepted: summary.answered,
      unknown: 0,
      rejected: 0,
      failed: 0,
      pending: 0,
    });
    const labelled = Object.values(stats).reduce((n, s) => n + s.feedback.labelled, 0);
    expect(labelled).toBe(summary.answered);
    for (const [v, tally] of Object.entries(summary.versions)) {
      expect(stats[v]!.feedback.labelled).toBe(tally.answered);
      expect(stats[v]!.feedback.correct).toBe(tally.correct);
    }
  });

  it('finds the server in GANTRY_SERVERS and stops after --requests', async () => {
    const before = await snapshot();
    const run = await gantry(
      ['load', MODEL, '--requests', '7', '--rps', '100', '--encoding', 'binary', '--feedback', '--json'],
      { ...env, GANTRY_SERVERS: url },
    );
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout) as LoadSummary;
    expect(summary).toMatchObject({ server: url, sent: 7, answered: 7, stoppedBy: 'requests' });
    // No feedback token: every label is refused by the server (counted as failed), and none is counted.
    expect(summary.feedback).toMatchObject({ sent: 7, accepted: 0, failed: 7 });
    expect(summary.feedback.lastError).toMatch(/401 .*no feedback token.*GANTRY_FEEDBACK_TOKEN/);
    const window = diffSnapshots(await snapshot(), before);
    expect(Object.values(window.versions).reduce((n, c) => n + c.requests, 0)).toBe(7);
    expect(Object.values(windowStats(window)).reduce((n, s) => n + s.feedback.labelled, 0)).toBe(0);
  });

  it('refuses bad input with exit code 2 naming the flag, and an unreachable server with 1', async () => {
    // A port that was just freed: nothing listens there.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const goneUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    // Independent commands: run side by side (each is a process that mostly waits on its own start-up).
    const [zero, duration, unknownFlag, unknownModel, noServer, unreachable] = await Promise.all([
      gantry(['load', MODEL, '--server', url, '--rps', '0'], env),
      gantry(['load', MODEL, '--server', url, '--duration', 'soon'], env),
      gantry(['load', MODEL, '--server', url, '--rsp', '5'], env),
      gantry(['load', 'no-such-model', '--server', url, '--requests', '1'], env),
      gantry(['load', MODEL, '--requests', '1'], env),
      gantry(['load', MODEL, '--server', goneUrl, '--requests', '1'], env),
    ]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('--rps: must be greater than 0');
    expect(duration.code).toBe(2);
    expect(duration.stderr).toContain('--duration: "soon" is not a duration');
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toContain("unknown option '--rsp'");
    expect(unknownModel.code).toBe(2);
    expect(unknownModel.stderr).toContain(`model "no-such-model" is not served by ${url} (it serves: ${MODEL})`);
    expect(noServer.code).toBe(2);
    expect(noServer.stderr).toContain('no model server: give --server URL');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain(`server unreachable: GET ${goneUrl}/v1/models/${MODEL} failed (ECONNREFUSED)`);
  });
});
