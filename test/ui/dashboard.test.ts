import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startRun } from '../../cli/runs';
import { readRegistry } from '../../control/registry';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { startDashboard, type Dashboard } from '../../ui/server';
import { completedRun, progressQuery } from '../../workflows/api';
import { ADMIN_TOKEN, startDeployment, type Deployment } from '../helpers/deployment';
import { sliceSpec } from '../helpers/specs';
import { waitFor } from '../helpers/workers';

/**
 * The dashboard in a real browser (Debian's headless Chromium) against a real stack: Temporal, in-process
 * control and train workers, a model server with live traffic. A run's learning curve appears while it trains; a
 * rollout's decisions appear as they are made; an action without the admin token is refused, with it done.
 * Screenshots go to a temp folder, or to docs/screenshots (the README's) with UPDATE_SCREENSHOTS=1.
 */

let deployment: Deployment | undefined;
let dashboard: Dashboard | undefined;
let browser: Browser | undefined;
let page: Page;
let shots: string;

const MODEL = 'fashion-mnist';
const TEMPORAL_UI = 'http://127.0.0.1:8233';

const spec = (seed: number, epochs: number) =>
  sliceSpec({
    train: { epochs, seed },
    evaluation: { minAccuracy: 0.5, minAccuracyDelta: -0.1 },
    deployment: {
      rollout: {
        enabled: true,
        steps: [
          { percent: 20, bake: '2s' },
          { percent: 50, bake: '2s' },
          { percent: 100, bake: '2s' },
        ],
        analysisInterval: '1s',
        minRequests: 15,
        maxExtensions: 5,
        thresholds: { minFeedback: 30, maxAccuracyDrop: 0.25, maxP99LatencyRatio: 20, maxPredictionDivergence: 0.3 },
      },
    },
  });

beforeAll(async () => {
  shots = process.env.UPDATE_SCREENSHOTS
    ? path.join(PROJECT_ROOT, 'docs', 'screenshots')
    : await mkdtemp(path.join(os.tmpdir(), 'gantry-ui-shots-'));
  await mkdir(shots, { recursive: true });
  deployment = await startDeployment('ui', ['control', 'train']);
  dashboard = await startDashboard({
    client: deployment.workers.client,
    adminToken: ADMIN_TOKEN,
    temporalUi: { url: TEMPORAL_UI, namespace: 'default' },
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  await deployment?.stop();
});

/**
 * A screenshot: to the temp folder as it is, or for the README (UPDATE_SCREENSHOTS=1) with its colours reduced
 * to a palette, so that the committed files stay small.
 */
async function shoot(name: string, png: Buffer): Promise<void> {
  const file = path.join(shots, `${name}.png`);
  if (process.env.UPDATE_SCREENSHOTS) await sharp(png).png({ palette: true, quality: 80 }).toFile(file);
  else await writeFile(file, png);
}

/** The dashboard at `hash`, polling every 300 ms so that a test sees each change soon after it is made. */
const open = (hash: string) => page.goto(`${dashboard!.url}/?poll=300#${hash}`);

it("shows a run's learning curve while it trains, with its numbers on demand", async () => {
  // Six short epochs: the page, polling every 300 ms, sees the curve before the last one on any machine.
  const handle = await startRun(deployment!.workers.client, spec(1, 6));
  await open(`/runs/${encodeURIComponent(handle.workflowId)}`);
  await page.getByRole('button', { name: 'Show numbers' }).first().waitFor({ timeout: 120_000 });
  // The loss chart's table, opened from the keyboard: the text alternative of the chart.
  await page.locator('[data-key="numbers-curve-loss"]').focus();
  await page.keyboard.press('Enter');
  const rows = page.locator('#curve-loss-numbers tbody tr');
  await rows.first().waitFor();
  // Seen during training: the curve has fewer points than the run has epochs, and the train stage runs.
  const during = {
    points: await rows.count(),
    train: await page.locator('[data-stage="train"] .badge').textContent(),
  };
  const progress = await handle.query(progressQuery);
  expect(during.points).toBeGreaterThanOrEqual(1);
  expect(during.points, JSON.stringify(progress.curve)).toBeLessThan(6);
  expect(during.train).toBe('running');
  expect(await page.locator('#curve-loss-numbers').isVisible()).toBe(true);
  expect(await page.locator('figure.chart canvas').count()).toBeGreaterThanOrEqual(2);

  const result = completedRun(await handle.result());
  expect(result.promoted).toBe(true);
  await waitFor('all six epochs on the page', async () => ((await rows.count()) === 6 ? true : undefined), 20_000);
  const train = await page.locator('#curve-loss-numbers tbody tr').allTextContents();
  // The table says the numbers the workflow keeps: epoch 1's train loss, as the run's result has it.
  expect(train[0]).toContain(result.train.history[0]!.loss.toFixed(4));
  const link = page.getByRole('link', { name: "Temporal's Web UI" });
  expect(await link.getAttribute('href')).toBe(
    `${TEMPORAL_UI}/namespaces/default/workflows/${encodeURIComponent(handle.workflowId)}`,
  );
  await page.locator('[data-stage="rollout"] .badge', { hasText: 'done' }).waitFor();
  await shoot('run', await page.screenshot({ fullPage: true }));
}, 240_000);

it("shows a rollout's decisions as they are made, each step's windows plotted against the thresholds", async () => {
  deployment!.startLoad(MODEL, { rps: 120, clients: 40 });
  const handle = await startRun(deployment!.workers.client, spec(2, 2));
  await waitFor('the rollout', async () => (await handle.query(progressQuery)).rolloutId ?? undefined, 180_000, 200);
  await open(`/models/${MODEL}`);
  await page.getByRole('heading', { name: /Rollout of v2/ }).waitFor({ timeout: 30_000 });
  const decisions = page.locator('#decisions li');
  // A step's pass is on the page before the rollout has finished.
  await decisions.filter({ hasText: 'step 1 (20 %)' }).filter({ hasText: 'pass' }).waitFor({ timeout: 60_000 });
  const whileRunning = await page.locator('#rollout-phase .badge').textContent();
  expect(['canary', 'starting', 'shadow']).toContain(whileRunning);
  const run = completedRun(await handle.result());
  expect(run.rollout?.result, JSON.stringify(run.rollout)).toBe('promoted');
  await decisions.filter({ hasText: 'promote' }).first().waitFor({ timeout: 20_000 });
  const text = await decisions.allTextContents();
  for (const step of ['step 1 (20 %)', 'step 2 (50 %)', 'step 3 (100 %)'])
    expect(
      text.some((t) => t.includes(step) && t.includes('pass')),
      `${step} in ${text.join('\n')}`,
    ).toBe(true);
  await page.locator('#rollout-phase .badge', { hasText: 'promoted' }).waitFor({ timeout: 20_000 });
  await shoot('rollout', await page.locator('#rollout').screenshot());
  // On a phone: the section's first screenful; nothing wider than the screen but the tables, which scroll in their
  // own box. Its top is read and clipped in one step, as a poll may redraw the page in between.
  await page.setViewportSize({ width: 390, height: 844 });
  const top = await page.evaluate<number>("document.getElementById('rollout').getBoundingClientRect().top + scrollY");
  await shoot(
    'rollout-phone',
    await page.screenshot({ fullPage: true, clip: { x: 0, y: top, width: 390, height: 844 } }),
  );
  expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
  await page.setViewportSize({ width: 1280, height: 900 });
  // The error-rate chart has its threshold as a series, and its table the numbers of every analysis.
  await page.locator('[data-key="numbers-ro-errors"]').click();
  const header = await page.locator('#ro-errors-numbers thead').textContent();
  expect(header).toContain('max error rate');
  expect(await page.locator('#ro-errors-numbers tbody tr').count()).toBeGreaterThan(3);
}, 300_000);

it('refuses an action without the admin token (401) or with a wrong one (403), does it with the token', async () => {
  await deployment!.load?.stop();
  await open(`/models/${MODEL}`);
  const promote = page.locator('[data-key="promote-v1"]');
  await promote.waitFor();
  const dialogs: string[] = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.accept();
  });
  await promote.click();
  await page.locator('#notice', { hasText: 'Refused (401)' }).waitFor();
  await page.fill('#admin-token', 'not-the-admin-token-at-all');
  await promote.click();
  await page.locator('#notice', { hasText: 'Refused (403)' }).waitFor();
  expect((await readRegistry(deployment!.workers.client, MODEL))!.aliases.champion).toBe(2);

  await page.fill('#admin-token', ADMIN_TOKEN);
  await page.locator('[data-key="promote-v1"]').click();
  await page.locator('#notice', { hasText: 'Done' }).waitFor({ timeout: 30_000 });
  expect(dialogs).toEqual(Array(3).fill('Promote v1 of fashion-mnist?'));
  expect((await readRegistry(deployment!.workers.client, MODEL))!.aliases.champion).toBe(1);

  // The API itself, not only the page, refuses a caller without the token.
  const bare = await fetch(`${dashboard!.url}/api/models/${MODEL}/promote`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: 2 }),
  });
  expect(bare.status).toBe(401);
}, 120_000);
