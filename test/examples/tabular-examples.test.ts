import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ServingClient, type RawRecord } from '../../serving/client';
import { startDevProject, type DevProject } from './dev-project';

/**
 * examples/penguins and examples/cars end to end, as their README says to run them: `gantry dev` in the project,
 * `gantry run <pipeline> --json`, then predictions from raw records over REST; the penguins model is then rolled out
 * against its champion while the test sends traffic and feedback.
 */

const stacks: DevProject[] = [];
afterAll(async () => {
  await Promise.all(stacks.map((s) => s.stop()));
});

async function vegaRows(project: DevProject, file: string): Promise<Record<string, unknown>[]> {
  return JSON.parse(await readFile(path.join(project.dir, 'node_modules', 'vega-datasets', 'data', file), 'utf8'));
}

describe('examples/penguins', () => {
  it('trains, publishes and serves a species classifier from raw records; a second run is rolled out', async () => {
    const project = await startDevProject('penguins');
    stacks.push(project);

    const first = await project.runJson(['penguins']);
    expect(first).toMatchObject({ version: 1, blessed: true, published: true, task: 'classification' });
    expect((first.metrics as { accuracy: number }).accuracy).toBeGreaterThanOrEqual(0.95);
    expect(first.promoted).toBe(true);

    // The local stack's server takes feedback only with its token, which servers.json hands to its clients.
    const { servers } = JSON.parse(await readFile(path.join(project.home, 'servers.json'), 'utf8'));
    expect(servers[0]).toMatchObject({ url: project.restUrl, feedbackToken: expect.any(String) });
    const client = new ServingClient(servers[0]);
    // A male Gentoo from the data, sent as the file holds it (its own column names, raw values).
    const gentoo: RawRecord = {
      Island: 'Biscoe',
      'Beak Length (mm)': 49.9,
      'Beak Depth (mm)': 16.1,
      'Flipper Length (mm)': 213,
      'Body Mass (g)': 5400,
      Sex: 'MALE',
    };
    const answer = await client.predictRecords('penguins', [gentoo]);
    expect(answer.version).toBe(1);
    expect(answer.predictions[0]).toMatchObject({ class: 'Gentoo' });

    // An island the model never saw goes to the out-of-vocabulary slot: answered, and counted per column.
    const unseen = await client.predictRecords('penguins', [{ ...gentoo, Island: 'Atlantis' }]);
    expect(unseen.predictions[0]).toHaveProperty('class');
    const metrics = await (await fetch(`${project.restUrl}/monitoring/prometheus/metrics`)).text();
    expect(metrics).toMatch(/gantry_serving_out_of_vocabulary_total\{model="penguins",column="Island"\} 1/);
    // A misspelt column is the client's mistake, named in a 400.
    const bad = await fetch(`${project.restUrl}/v1/models/penguins:predict`, {
      method: 'POST',
      body: JSON.stringify({ instances: [{ ...gentoo, 'Beak Lenght (mm)': 40 }] }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('Beak Lenght (mm)');

    // A second run (another seed) against the champion: its canary is judged on live traffic with feedback.
    const rows = (await vegaRows(project, 'penguins.json')).filter((r) => r.Species && r['Beak Length (mm)']);
    const classes = ['Adelie', 'Chinstrap', 'Gentoo'];
    let sending = true;
    const traffic = (async () => {
      for (let i = 0; sending; i++) {
        const { Species, ...record } = rows[i % rows.length]!;
        const reply = await client.predictRecords('penguins', [record as RawRecord], { clientKey: `user-${i % 40}` });
        await client.feedback('penguins', [{ requestId: reply.requestId, labels: classes.indexOf(Species as string) }]);
      }
    })();
    try {
      const second = await project.runJson(['penguins', '--set', 'train.seed=7']);
      expect(second).toMatchObject({ version: 2, blessed: true, published: true });
      expect((second.champion as { version: number }).version).toBe(1);
      expect(second.rollout).toMatchObject({ result: 'promoted' });
      expect((second.rollout as { decisions: number }).decisions).toBeGreaterThanOrEqual(2);
    } finally {
      sending = false;
      await traffic;
    }
    expect((await client.predictRecords('penguins', [gentoo])).version).toBe(2);
  }, 400_000);
});

describe('examples/cars', () => {
  it('trains a miles-per-gallon regression and serves its value from a raw record', async () => {
    const project = await startDevProject('cars');
    stacks.push(project);
    const result = await project.runJson(['cars']);
    expect(result).toMatchObject({ version: 1, published: true, task: 'regression' });
    const { rmse, r2 } = result.metrics as { rmse: number; r2: number };
    expect(rmse).toBeLessThanOrEqual(4);
    expect(r2).toBeGreaterThan(0.7);

    // A 1982 Honda Civic from the data, its label and name left out.
    const civic = (await vegaRows(project, 'cars.json')).find(
      (r) => r.Name === 'honda civic' && r.Year === '1982-01-01',
    );
    expect(civic).toBeDefined();
    const { Name, Miles_per_Gallon, ...record } = civic!;
    const answer = await new ServingClient({ url: project.restUrl }).predictRecords('cars', [record as RawRecord]);
    const value = (answer.predictions[0] as { value: number }).value;
    expect(Math.abs(value - (Miles_per_Gallon as number))).toBeLessThan(8);
  }, 300_000);
});
