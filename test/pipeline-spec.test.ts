import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decideBlessing } from '../activities/blessing';
import { applyOverrides, definePipeline, loadPipeline, PipelineSpecError, validatePipeline } from '../pipelines';
import { durationMs, parseDuration } from '../pipelines/duration';
import fashionMnist from '../pipelines/fashion-mnist';
import { thrownBy } from './helpers/errors';

const issuesOf = (fn: () => unknown) => thrownBy(PipelineSpecError, fn).issues;

describe('definePipeline', () => {
  it('fills in defaults and keeps the spec plain data', () => {
    const spec = definePipeline({
      name: 'p',
      data: { source: 'fashion-mnist' },
      model: { name: 'm', architecture: 'cnn' },
    });
    expect(spec.train).toMatchObject({
      epochs: 12,
      batchSize: 128,
      optimizer: 'adam',
      heartbeatTimeout: '60s',
      maxAttempts: 5,
    });
    expect(spec.evaluation).toEqual({ minAccuracy: 0.8, minAccuracyDelta: 0, gates: [] });
    expect(spec.deployment).toEqual({ publish: true, alias: 'champion' });
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
  });

  it('names every bad field at once, with its path and reason', () => {
    const issues = issuesOf(() =>
      definePipeline({
        name: 'Bad Name!',
        data: { source: 'imagenet', validationFraction: 2 },
        model: { name: 'm', architecture: 'mlp', options: { hiddenUnits: [], dropout: 1.5 } },
        train: { epochs: 0, heartbeatTimeout: 'soon' },
        schedule: { cron: '' },
        extra: true,
      } as never),
    );
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'name',
        'data.validationFraction',
        'train.epochs',
        'train.heartbeatTimeout',
        'schedule.cron',
        'data.source',
        'model.options.hiddenUnits',
        'model.options.dropout',
      ]),
    );
    // Other registered sources may sort around these three.
    expect(issues.find((i) => i.path === 'data.source')!.message).toMatch(
      /^unknown data source "imagenet"; known: (.+, )?fashion-mnist, idx, image-folder(, .+)?$/,
    );
    expect(issues.find((i) => i.path === 'train.heartbeatTimeout')!.message).toMatch(/duration/);
    expect(issues.some((i) => /extra/.test(i.message))).toBe(true);
  });

  it('refuses an unknown architecture by name, listing the known ones', () => {
    const issues = issuesOf(() => validatePipeline({ ...fashionMnist, model: { name: 'm', architecture: 'vgg16' } }));
    expect(issues).toEqual([
      { path: 'model.architecture', message: 'unknown model architecture "vgg16"; known: mlp, cnn, tabular' },
    ]);
  });
});

describe('--set overrides', () => {
  it('parse JSON values and keep text as strings', () => {
    const spec = validatePipeline(
      applyOverrides(fashionMnist, [
        'train.epochs=3',
        'model.architecture=cnn',
        'data.limits={"train":100}',
        'deployment.publish=false',
      ]),
    );
    expect(spec.train.epochs).toBe(3);
    expect(spec.model.architecture).toBe('cnn');
    expect(spec.data.limits).toEqual({ train: 100 });
    expect(spec.deployment.publish).toBe(false);
    expect(fashionMnist.train.epochs).toBe(15);
  });

  it('refuse malformed assignments and paths through non-objects', () => {
    expect(issuesOf(() => applyOverrides(fashionMnist, ['epochs']))[0]!.message).toMatch(/not path=value/);
    expect(issuesOf(() => applyOverrides(fashionMnist, ['name.first=x']))[0]).toEqual({
      path: 'name.first',
      message: 'cannot set a field inside "name", which is not an object',
    });
  });

  it('index lists by number, append at their length, and refuse what is no field of the spec', () => {
    const gated = { ...fashionMnist, evaluation: { ...fashionMnist.evaluation, gates: [{ metric: 'auc', min: 0.5 }] } };
    const spec = validatePipeline(
      applyOverrides(gated, ['evaluation.gates.0.min=0.9', 'evaluation.gates.1={"metric":"logLoss","max":0.6}']),
    );
    expect(spec.evaluation.gates).toEqual([
      { metric: 'auc', min: 0.9 },
      { metric: 'logLoss', max: 0.6 },
    ]);
    expect(gated.evaluation.gates[0]!.min).toBe(0.5);
    expect(issuesOf(() => applyOverrides(gated, ['evaluation.gates.5.min=1']))[0]!.message).toMatch(/past its end/);
    expect(issuesOf(() => applyOverrides(gated, ['evaluation.gates.first=1']))[0]!.message).toMatch(/is a list/);
    expect(issuesOf(() => applyOverrides(gated, ['train.0=1']))[0]!.message).toMatch(/not a list/);
    for (const key of ['__proto__.polluted=1', 'train.constructor.prototype.polluted=1']) {
      expect(issuesOf(() => applyOverrides(gated, [key]))[0]!.message).toMatch(/is not a field of the spec/);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('loading pipelines', () => {
  it('by built-in name, from a .ts module and from JSON', async () => {
    expect((await loadPipeline('fashion-mnist')).name).toBe('fashion-mnist');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-pipelines-'));
    const json = path.join(dir, 'p.json');
    await writeFile(
      json,
      JSON.stringify({
        name: 'from-json',
        data: { source: 'fashion-mnist' },
        model: { name: 'j', architecture: 'mlp' },
      }),
    );
    expect((await loadPipeline(json)).name).toBe('from-json');
    const bad = path.join(dir, 'bad.json');
    await writeFile(
      bad,
      JSON.stringify({ name: 'bad', data: { source: 'fashion-mnist' }, model: { name: 'j', architecture: 'lstm' } }),
    );
    await expect(loadPipeline(bad)).rejects.toThrow(/model\.architecture: unknown model architecture "lstm"/);
    await expect(loadPipeline('nope')).rejects.toThrow(/unknown pipeline "nope"/);
  });
});

describe('the blessing decision', () => {
  const metrics = (accuracy: number, loss = 0.4) => ({
    task: 'classification' as const,
    count: 100,
    accuracy,
    loss,
    perClassAccuracy: [],
    metrics: { accuracy, logLoss: loss },
  });
  const gate = { minAccuracy: 0.8, minAccuracyDelta: 0, gates: [] };

  it('without a champion applies only the absolute gates', () => {
    expect(decideBlessing(metrics(0.85), null, gate)).toEqual({
      blessed: true,
      reasons: [
        'pass: test accuracy 85.00% ≥ minimum 80.00%',
        'pass: no champion yet, so only the absolute gates apply',
      ],
    });
    expect(decideBlessing(metrics(0.75), null, gate).blessed).toBe(false);
  });

  it('against a champion needs the change gate too, and explains each gate', () => {
    const worse = decideBlessing(metrics(0.85), { version: 4, metrics: metrics(0.87) }, gate);
    expect(worse.blessed).toBe(false);
    expect(worse.reasons[1]).toBe(
      'FAIL: accuracy change against champion v4 (87.00%) is −2.00 points; the gate requires at least +0.00',
    );
    expect(
      decideBlessing(metrics(0.865), { version: 4, metrics: metrics(0.87) }, { ...gate, minAccuracyDelta: -0.005 })
        .blessed,
    ).toBe(true);
    const lossy = decideBlessing(metrics(0.9, 0.6), null, { ...gate, maxLoss: 0.5 });
    expect(lossy).toMatchObject({ blessed: false });
    expect(lossy.reasons[1]).toBe('FAIL: test loss 0.6000 > maximum 0.5');
  });
});

describe('durations', () => {
  it('read with a unit the way Temporal reads them; a bare number, zero or a word is refused', () => {
    expect(['500ms', '30s', '2m', '1h', '1.5s'].map(parseDuration)).toEqual([500, 30_000, 120_000, 3_600_000, 1500]);
    for (const bad of ['30', '0s', '-1s', 'soon', '']) expect(parseDuration(bad), bad).toBeUndefined();
    expect(() => durationMs('soon')).toThrow('"soon" is not a duration (e.g. 30s, 2m, 1h, 500ms)');
  });
});
