import type { StepDefinition } from './project';
import type { PipelineSpec } from './spec';

/**
 * At submission, each of a spec's step placements gets the pool, timeout and retries of the step it names, unless
 * it sets its own: the workflow then has them as data (it cannot see the project's code). A placement naming no
 * registered step is refused here, before anything starts, with the names the project has.
 */
export function placeSteps(spec: PipelineSpec, steps: readonly StepDefinition[]): PipelineSpec {
  if (spec.steps.length === 0) return spec;
  const byName = new Map(steps.map((s) => [s.name, s]));
  const placements = spec.steps.map((placement, i) => {
    const step = byName.get(placement.name);
    if (!step) {
      const known = steps.length
        ? `registered steps: ${steps.map((s) => s.name).join(', ')}`
        : 'the project registers none';
      throw new Error(`steps.${i}.name: no step named "${placement.name}" (${known})`);
    }
    return {
      ...placement,
      pool: placement.pool ?? step.pool,
      timeout: placement.timeout ?? step.timeout,
      retries: placement.retries ?? step.retries,
    };
  });
  return { ...spec, steps: placements };
}
