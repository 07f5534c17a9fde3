import { Client, Connection } from '@temporalio/client';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../ui/server';
import { createTestEnv } from '../helpers/env';

/**
 * The pages that the stack test (dashboard.test.ts) does not reach, in the real browser with the API's answers
 * given by the test (page.route): a distributed run's per-rank curves, an experiment's arms with their intervals
 * and verdict, a version's spec changes against its parent, a tuning study's trials and scatter plots; and the
 * keyboard's way in. No TensorFlow.
 */

let connection: Connection;
let dashboard: Dashboard;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  const env = await createTestEnv('ui-pages');
  connection = await Connection.connect({ address: env.address });
  dashboard = await startDashboard({ client: new Client({ connection, namespace: 'default' }), adminToken: null });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
});

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  await connection?.close();
});

const point = (epoch: number, loss: number) => ({
  epoch,
  attempt: 1,
  loss,
  accuracy: 1 - loss / 2,
  valLoss: loss + 0.1,
  valAccuracy: 0.8,
});

const stages = { ingest: 'done', train: 'running', evaluate: 'pending', register: 'pending' };

const run = {
  runId: 'dist-run',
  status: 'RUNNING',
  startTime: '2026-01-01T00:00:00.000Z',
  closeTime: null,
  result: null,
  error: null,
  temporalUrl: null,
  progress: {
    runId: 'dist-run',
    pipeline: 'fashion-mnist',
    model: 'fashion-mnist',
    status: 'running',
    stage: 'train',
    stages: { ...stages, publish: 'pending', rollout: 'pending' },
    train: null,
    curve: [point(1, 0.9), point(2, 0.6)],
    dataset: null,
    evaluation: null,
    version: null,
    rolloutId: null,
    rollout: null,
    error: null,
  },
  job: {
    jobId: 'dist-run-train',
    strategy: 'multi-worker-mirrored',
    attempt: 1,
    replicas: [
      { rank: 0, curve: [point(1, 0.9), point(2, 0.6)] },
      { rank: 1, curve: [point(1, 0.91), point(2, 0.61)] },
    ],
  },
};

const version = (n: number, spec: unknown, parent: number | null) => ({
  version: n,
  status: 'published',
  blessed: true,
  metrics: { testAccuracy: 0.85 },
  lineage: { runId: `run-${n}`, datasetFingerprint: 'abcdef0123456789', spec, parentVersion: parent, gitCommit: null },
  registeredAt: '2026-01-01T00:00:00.000Z',
});

const model = {
  registry: {
    model: 'fashion-mnist',
    versions: [version(1, { train: { epochs: 2, seed: 1 } }, null), version(2, { train: { epochs: 4, seed: 1 } }, 1)],
    aliases: { champion: 1 },
    serving: null,
    lastApply: null,
    events: [],
  },
  rollout: null,
  experiment: {
    model: 'fashion-mnist',
    phase: 'running',
    running: true,
    startedAt: '2026-01-01T00:00:00.000Z',
    endsAt: '2026-01-01T01:00:00.000Z',
    stoppedEarly: false,
    arms: [
      { version: 1, weight: 50, requests: 400, labelled: 200, accuracy: 0.8, interval: { low: 0.739, high: 0.85 } },
      { version: 2, weight: 50, requests: 380, labelled: 190, accuracy: 0.9, interval: { low: 0.85, high: 0.935 } },
    ],
    verdict: {
      winner: 2,
      best: 2,
      alpha: 0.05,
      summary: 'v2 wins: 90.0 % vs 80.0 % (p = 0.006)',
      comparisons: [{ against: 1, z: 2.75, pValue: 0.006, significant: true }],
      arms: [],
    },
  },
};

it("draws a distributed run's curves per rank, each with its numbers", async () => {
  await page.route('**/api/runs/dist-run', (route) => route.fulfill({ json: run }));
  await page.goto(`${dashboard.url}/?poll=60000#/runs/dist-run`);
  await page.getByRole('heading', { name: /Per rank \(multi-worker-mirrored, attempt 1\)/ }).waitFor();
  await page.locator('[data-key="numbers-rank-loss"]').click();
  expect(await page.locator('#rank-loss-numbers thead').textContent()).toBe('epochrank 0 lossrank 1 loss');
  expect(await page.locator('#rank-loss-numbers tbody tr').allTextContents()).toEqual([
    '10.90000.9100',
    '20.60000.6100',
  ]);
  expect(await page.locator('[data-stage="train"] .badge').textContent()).toBe('running');
});

it("shows an experiment's arms with their intervals and verdict, and each version's spec changes", async () => {
  await page.route('**/api/models/fashion-mnist', (route) => route.fulfill({ json: model }));
  await page.goto(`${dashboard.url}/?poll=60000#/models/fashion-mnist`);
  const arms = page.locator('#experiment table').first();
  await arms.waitFor();
  expect(await arms.locator('tbody tr').allTextContents()).toEqual([
    'v15040020080.00 %73.90 % – 85.00 %',
    'v25038019090.00 %85.00 % – 93.50 %',
  ]);
  expect(await page.locator('#experiment').textContent()).toContain('verdict: v2 wins: 90.0 % vs 80.0 % (p = 0.006)');
  expect(await page.locator('#experiment svg[role="img"] circle').count()).toBe(2);
  expect(await page.getByText('v2 (parent v1): train.epochs: 2 → 4').count()).toBe(1);
  // Actions are off here (no admin token): the page still asks first, then says the server refused.
  page.once('dialog', (dialog) => void dialog.accept());
  await page.getByRole('button', { name: 'Stop experiment' }).click();
  await page.locator('#notice', { hasText: 'Refused (403)' }).waitFor();
});

const trial = (n: number, params: Record<string, unknown>, state: string, metric: number | null, extra = {}) => ({
  trial: n,
  runId: `fm-tune-1/trial-${n}`,
  params,
  state,
  epochs: metric === null ? 0 : 2,
  targetEpochs: 2,
  metric,
  bestMetric: metric,
  values: metric === null ? [] : [metric - 0.05, metric],
  trainings: 1,
  attempts: 1,
  resumedFromEpoch: null,
  stoppedReason: null,
  error: null,
  progress: null,
  ...extra,
});

const lr = 'train.learningRate';
const layers = 'model.options.hidden';
const study = {
  studyId: 'fm-tune-1',
  status: 'RUNNING',
  startTime: '2026-01-01T00:00:00.000Z',
  closeTime: null,
  temporalUrl: null,
  params: [
    { path: layers, scale: 'category', categories: ['[32]', '[64,32]'] },
    { path: lr, scale: 'log', categories: null },
  ],
  study: {
    studyId: 'fm-tune-1',
    pipeline: 'fashion-mnist',
    model: 'fashion-mnist',
    status: 'running',
    algorithm: 'asha',
    objective: { metric: 'accuracy', goal: 'max' },
    budget: { trials: 4, epochs: null },
    parallelism: 2,
    epochsTrained: 6,
    trials: [
      trial(1, { [lr]: 0.0003, [layers]: [32] }, 'completed', 0.81),
      trial(2, { [lr]: 0.003, [layers]: [64, 32] }, 'completed', 0.86),
      trial(3, { [lr]: 0.0001, [layers]: [32] }, 'stopped', 0.7, { stoppedReason: 'below the rung 1 cut (0.80)' }),
      trial(4, { [lr]: 0.001, [layers]: [64, 32] }, 'running', null, {
        progress: { epoch: 1, step: 5, stepsPerEpoch: 10, loss: 0.6, attempt: 1 },
      }),
    ],
    best: { trial: 2, params: { [lr]: 0.003, [layers]: [64, 32] }, metric: 0.86, epochs: 2 },
    runId: 'fm-tune-1/best',
    version: null,
    error: null,
  },
};

it("lists tuning studies; a study's trials, best run and each parameter against the objective", async () => {
  await page.route('**/api/tuning', (route) =>
    route.fulfill({ json: { studies: [{ ...study, params: undefined, temporalUrl: undefined }] } }),
  );
  await page.route('**/api/tuning/fm-tune-1', (route) => route.fulfill({ json: study }));
  await page.goto(`${dashboard.url}/?poll=60000#/tuning`);
  await page.locator('[data-key="study-fm-tune-1"]').waitFor();
  expect(await page.locator('main tbody tr').allTextContents()).toEqual([
    'fm-tune-1runningashavalidation accuracy (max)3/40.8600 (trial 2)2026-01-01 00:00:00',
  ]);
  await page.locator('[data-key="study-fm-tune-1"]').click();
  await page.getByRole('heading', { name: 'Study fm-tune-1' }).waitFor();
  expect(await page.locator('#trials tbody tr').allTextContents()).toEqual([
    '1completed2/20.81000.8100[32]3.00e-4–',
    '2completed2/20.86000.8600[64,32]3.00e-3–',
    '3stopped2/20.70000.7000[32]1.00e-4stopped early: below the rung 1 cut (0.80)',
    '4running (epoch 1 step 5/10)0/2––[64,32]1.00e-3–',
  ]);
  expect(await page.locator('#best').textContent()).toBe(
    'trial 2: validation accuracy 0.8600 after 2 epochs (hidden=[64,32] learningRate=3.00e-3) · its run ' +
      'fm-tune-1/best',
  );
  expect(await page.locator('[data-key="best-run"]').getAttribute('href')).toBe('#/runs/fm-tune-1%2Fbest');
  // One scatter plot per parameter, each drawn (uPlot's canvas) and with its numbers on demand.
  const charts = page.locator('#study-charts figure.chart');
  expect(await charts.locator('figcaption').allTextContents()).toEqual([
    `validation accuracy against ${layers}`,
    `validation accuracy against ${lr} (log scale)`,
  ]);
  expect(await charts.locator('canvas').count()).toBe(2);
  await page.locator('[data-key="numbers-param-0"]').click();
  expect(await page.locator('#param-0-numbers tbody tr').allTextContents()).toEqual([
    '[32]0.8100–',
    '[32]0.7000–',
    '[64,32]–0.8600',
  ]);
  await page.locator('[data-key="numbers-param-1"]').click();
  expect(await page.locator('#param-1-numbers tbody tr').allTextContents()).toEqual([
    '0.00010.7000–',
    '0.00030.8100–',
    '0.003–0.8600',
  ]);
});

it('lets the keyboard skip to the content and reach every section', async () => {
  await page.goto(`${dashboard.url}/#/runs`);
  await page.getByRole('heading', { name: 'Runs' }).waitFor();
  await page.keyboard.press('Tab');
  expect(await page.evaluate<string>('document.activeElement.textContent')).toBe('Skip to content');
  await page.keyboard.press('Enter');
  expect(await page.evaluate<string>('document.activeElement.id')).toBe('main');
  expect(await page.evaluate<string>('location.hash')).toBe('#/runs');
  await page.goto(`${dashboard.url}/?again#/runs`);
  await page.getByRole('heading', { name: 'Runs' }).waitFor();
  const reached: string[] = [];
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate<string>('document.activeElement.textContent || document.activeElement.id'));
  }
  expect(reached).toEqual(['Skip to content', 'Gantry', 'Runs', 'Models', 'Tuning', 'admin-token']);
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Tuning studies' }).waitFor();
  expect(await page.locator('nav a[aria-current="page"]').textContent()).toBe('Tuning');
});
