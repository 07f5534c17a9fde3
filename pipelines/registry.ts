import type { PipelineSpec } from './spec';
import type { StepDefinition } from './project';

/**
 * The steps and pipelines of the user's project, registered when its project file loads
 * (pipelines/load-project.ts). Data sources and architectures live in their own registries
 * (data/sources.ts, training/architectures.ts), next to the built-ins.
 */
const steps = new Map<string, StepDefinition>();
const pipelines = new Map<string, PipelineSpec>();

/** Adds a step; the same name twice with different definitions is refused (a spec names one). */
export function registerStep(step: StepDefinition): void {
  const existing = steps.get(step.name);
  if (existing && existing !== step)
    throw new Error(`step "${step.name}" is registered twice with different definitions`);
  steps.set(step.name, step);
}

export function stepNames(): string[] {
  return [...steps.keys()].sort();
}

export function getStep(name: string): StepDefinition | undefined {
  return steps.get(name);
}

/** Every registered step, for the workers that run them as activities. */
export function registeredSteps(): StepDefinition[] {
  return [...steps.values()];
}

export function registerPipeline(spec: PipelineSpec): void {
  if (pipelines.has(spec.name) && pipelines.get(spec.name) !== spec)
    throw new Error(`pipeline "${spec.name}" is defined twice in the project`);
  pipelines.set(spec.name, spec);
}

export function projectPipeline(name: string): PipelineSpec | undefined {
  return pipelines.get(name);
}

export function projectPipelineNames(): string[] {
  return [...pipelines.keys()].sort();
}
