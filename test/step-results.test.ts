import { describe, expect, it } from 'vitest';
import { checkStepResult } from '../activities/steps';
import { taskQueueOf } from '../control/task-queues';
import { defineStep } from '../pipelines/project';
import { validateSubmission } from '../pipelines/define';
import { registerStep } from '../pipelines/registry';
import { sliceSpec } from './helpers/specs';

describe("a step's answer", () => {
  it('is plain JSON data and an optional reason to stop', () => {
    expect(checkStepResult('s', undefined)).toEqual({ data: {}, stop: null });
    expect(checkStepResult('s', { data: { rows: 3, ok: [true, null, 'x'] } })).toEqual({
      data: { rows: 3, ok: [true, null, 'x'] },
      stop: null,
    });
    expect(checkStepResult('s', { stop: '  too few rows ' })).toEqual({ data: {}, stop: 'too few rows' });
  });

  it('is refused, naming the step and the field, when it cannot travel as JSON', () => {
    const refusal = (value: unknown) => {
      try {
        checkStepResult('gate', value);
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(refusal({ data: { score: Number.NaN } })).toBe(
      'step "gate" returned an unusable result: data.score: NaN is not a finite number (JSON has no NaN or Infinity)',
    );
    expect(refusal([1, 2])).toBe('step "gate" returned something other than { data?, stop? }');
    expect(refusal(new Map())).toBe('step "gate" returned something other than { data?, stop? }');
    expect(refusal({ data: { at: [1, new Date(0)] } })).toBe(
      'step "gate" returned an unusable result: data.at.1: a Date is not plain JSON data',
    );
    expect(refusal({ stop: '' })).toContain('stop: must say why the run stops');
    expect(refusal({ verdict: 'ok' })).toContain('step "gate" returned an unusable result');
  });
});

describe('task queues', () => {
  it("a project's own pool gets a queue like Gantry's; a bad name is refused", () => {
    const env = { GANTRY_TASK_QUEUE_PREFIX: 'acme' };
    expect(taskQueueOf('control', env)).toBe('acme-control');
    expect(taskQueueOf('gpu-large', env)).toBe('acme-gpu-large');
    expect(() => taskQueueOf('GPU pool', env)).toThrow('pool "GPU pool" is not a pool name');
  });
});

describe('step placements at submission', () => {
  const gate = defineStep({ name: 'gate', pool: 'etl', timeout: '2m', retries: 1, run: async () => undefined });
  registerStep(gate);

  it("take the step's pool, timeout and retries unless they set their own", () => {
    const spec = sliceSpec();
    spec.steps = [
      { name: 'gate', at: 'after-ingest', options: {} },
      { name: 'gate', at: 'before-publish', timeout: '30s', retries: 0, options: {} },
    ];
    expect(validateSubmission(spec).steps).toEqual([
      { name: 'gate', at: 'after-ingest', pool: 'etl', timeout: '2m', retries: 1, options: {} },
      { name: 'gate', at: 'before-publish', pool: 'etl', timeout: '30s', retries: 0, options: {} },
    ]);
  });

  it('refuse a step the project does not register, listing those it does', () => {
    const spec = sliceSpec();
    spec.steps = [{ name: 'gait', at: 'after-ingest', options: {} }];
    expect(() => validateSubmission(spec)).toThrow(/steps\.0\.name: unknown step "gait"; known: .*gate/);
  });
});
