import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import type { StepContext, StepDefinition } from '../pipelines/project';
import { stepActivityType, type StepActivityInput, type StepActivityResult } from '../workflows/api';
import type { ActivityDeps } from './deps';

/**
 * Users' steps (pipelines/project.ts defineStep) as Temporal activities: one activity type per step,
 * `step:<name>`, so the workflow can place any registered step on any pool and Temporal records which one ran.
 * What a step returns lands in the workflow history, the run's result and the version's lineage, so it must be
 * small plain JSON: checked here, where a bad answer can still name the step.
 */

/** The most a step's answer may weigh as JSON: it is stored in the history and in every version's lineage. */
export const MAX_STEP_RESULT_BYTES = 256 * 1024;
const MAX_STOP_REASON = 2000;

const MAX_DEPTH = 32;

/** Where `value` stops being plain JSON (a path such as `data.scores.2`) and why; null when it is plain JSON. */
function jsonProblem(value: unknown, where: string, depth = 0): string | null {
  if (depth > MAX_DEPTH) return `${where}: nested more than ${MAX_DEPTH} levels deep`;
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return null;
  if (typeof value === 'number')
    return Number.isFinite(value) ? null : `${where}: ${value} is not a finite number (JSON has no NaN or Infinity)`;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = jsonProblem(value[i], `${where}.${i}`, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value)) {
      const problem = jsonProblem(item, `${where}.${key}`, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  const kind = typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
  return `${where}: a ${kind} is not plain JSON data`;
}

const StepResultSchema = z
  .object({
    data: z.record(z.string(), z.unknown()).optional(),
    stop: z.string().trim().min(1, 'must say why the run stops').max(MAX_STOP_REASON).optional(),
  })
  .strict();

/** Error type of a step's unusable answer: retrying the same code on the same input would return it again. */
export const INVALID_STEP_RESULT = 'InvalidStepResult';

function invalid(step: string, why: string): ApplicationFailure {
  return ApplicationFailure.create({
    message: `step "${step}" returned ${why}`,
    type: INVALID_STEP_RESULT,
    nonRetryable: true,
  });
}

/** The step's answer as the workflow takes it, or a non-retryable failure that names the step and the field. */
export function checkStepResult(step: string, returned: unknown): StepActivityResult {
  if (returned === undefined || returned === null) return { data: {}, stop: null };
  // Plain data only: a class instance (a Date, a Map, a tensor) would not survive the trip through the history.
  if (typeof returned !== 'object' || Array.isArray(returned) || Object.getPrototypeOf(returned) !== Object.prototype)
    throw invalid(step, 'something other than { data?, stop? }');
  const parsed = StepResultSchema.safeParse(returned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : 'its result';
    throw invalid(step, `an unusable result: ${where}: ${issue.message}`);
  }
  const data = parsed.data.data ?? {};
  const problem = jsonProblem(data, 'data');
  if (problem) throw invalid(step, `an unusable result: ${problem}`);
  const bytes = Buffer.byteLength(JSON.stringify(data));
  if (bytes > MAX_STEP_RESULT_BYTES)
    throw invalid(
      step,
      `${bytes} bytes of data, more than the ${MAX_STEP_RESULT_BYTES} a step may record; ` +
        'write large outputs to a file and return its path',
    );
  return { data, stop: parsed.data.stop ?? null };
}

export type StepActivity = (input: StepActivityInput) => Promise<StepActivityResult>;

/**
 * The activities of a project's steps, keyed by activity type. Every worker that registers them can run any of
 * them; which pool runs a step is the placement's choice (its task queue). `deps` is the worker's, taken so steps
 * are created like every other activity; steps see only their StepContext.
 */
export function createStepActivities(
  steps: readonly StepDefinition[],
  _deps?: ActivityDeps,
): Record<string, StepActivity> {
  const activities: Record<string, StepActivity> = {};
  for (const step of steps) {
    const type = stepActivityType(step.name);
    if (activities[type]) throw new Error(`two steps are named "${step.name}": step names must be unique`);
    activities[type] = async (input) => {
      const context: StepContext = {
        runId: input.runId,
        pipeline: input.pipeline,
        at: input.at,
        spec: input.spec,
        options: input.options,
        outputs: input.outputs,
        heartbeat: (details?: unknown) => Context.current().heartbeat(details),
      };
      return checkStepResult(step.name, await step.run(context));
    };
  }
  return activities;
}
