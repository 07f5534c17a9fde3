import type { z } from 'zod';
import {
  ARCHITECTURES,
  architectureNames,
  getArchitecture,
  registerArchitecture,
  type Architecture,
  type ArchitectureName,
} from '../training/architectures';
import { dataSourceNames, findDataSource, registerDataSource } from '../data/sources';
import { TASK_METRICS, taskOfMetric, type MetricName } from '../training/metrics';
import { fieldPath, issueLines } from '../validation/issues';
import type { ArchitectureDefinition, DataSourceDefinition, StepDefinition } from './project';
import { getStep, registerStep, stepNames } from './registry';
import { PipelineSpecSchema, type PipelineInput, type PipelineSpec, type StepPlacement } from './spec';

export interface SpecIssue {
  /** Dotted path of the bad field, e.g. `train.epochs`. */
  path: string;
  message: string;
}

/** A spec that cannot run; carries every bad field at once so the author fixes them in one go. */
export class PipelineSpecError extends Error {
  constructor(readonly issues: SpecIssue[]) {
    const lines = issueLines(issues.map((issue) => ({ path: [issue.path], message: issue.message })));
    super(`invalid pipeline spec:\n  ${lines.join('\n  ')}`);
    this.name = 'PipelineSpecError';
  }
}

function pathOf(segments: readonly PropertyKey[]): string {
  return fieldPath(segments) || '(root)';
}

/**
 * While a project file is being imported, its pipelines may name the definitions it registers once the import is
 * done: definePipeline then leaves unknown names to the loader, which validates every pipeline again afterwards.
 */
let projectImports = 0;

/** Runs `load` (a project file's import) with unknown registry names deferred; see pipelines/load-project.ts. */
export async function deferringRegistryNames<T>(load: () => Promise<T>): Promise<T> {
  projectImports++;
  try {
    return await load();
  } finally {
    projectImports--;
  }
}

/** Names checked against the registries the workers load: an unknown one must not start a run. */
function registryIssues(input: unknown, checkSteps: boolean): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const spec = (input ?? {}) as {
    data?: { source?: unknown; image?: unknown };
    model?: { architecture?: unknown; options?: unknown };
  };
  const source = spec.data?.source;
  if (typeof source === 'string' && !dataSourceNames().includes(source)) {
    issues.push({
      path: 'data.source',
      message: `unknown data source "${source}"; known: ${dataSourceNames().join(', ')}`,
    });
  } else if (typeof source === 'string' && findDataSource(source)?.needsImageShape && spec.data?.image === undefined) {
    issues.push({ path: 'data.image', message: `the ${source} source needs { height, width, channels } to decode to` });
  }
  const architecture = spec.model?.architecture;
  if (typeof architecture === 'string') {
    if (!architectureNames().includes(architecture)) {
      issues.push({
        path: 'model.architecture',
        message: `unknown model architecture "${architecture}"; known: ${architectureNames().join(', ')}`,
      });
    } else {
      const options = getArchitecture(architecture).options.safeParse(spec.model?.options ?? {});
      if (!options.success) {
        for (const issue of options.error.issues) {
          issues.push({ path: pathOf(['model', 'options', ...issue.path]), message: issue.message });
        }
      }
    }
  }
  const placements = (input as { steps?: unknown } | undefined)?.steps;
  if (checkSteps && Array.isArray(placements)) {
    placements.forEach((placement: { name?: unknown }, i) => {
      const name = placement?.name;
      if (typeof name === 'string' && getStep(name) === undefined) {
        const known = stepNames();
        issues.push({
          path: `steps.${i}.name`,
          message: `unknown step "${name}"; known: ${known.length > 0 ? known.join(', ') : '(none registered)'}`,
        });
      }
    });
  }
  return issues;
}

/** Sources whose labels are always classes. */
const CLASSIFICATION_SOURCES = new Set(['fashion-mnist', 'idx', 'image-folder']);

/**
 * Evaluation gates that cannot hold: a metric of the other task (when the spec says the task, or the source
 * implies it), a gate with no bound, or a minimum above its maximum.
 */
function gateIssues(spec: PipelineSpec): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const task = spec.data.task ?? (CLASSIFICATION_SOURCES.has(spec.data.source) ? 'classification' : undefined);
  spec.evaluation.gates.forEach((gate, i) => {
    const path = `evaluation.gates.${i}`;
    if (task && taskOfMetric(gate.metric) !== task) {
      issues.push({
        path: `${path}.metric`,
        message:
          `"${gate.metric}" is not a metric of a ${task}; ` +
          `its metrics are ${(TASK_METRICS[task] as readonly MetricName[]).join(', ')}`,
      });
    }
    if (gate.min === undefined && gate.max === undefined && gate.maxWorsening === undefined)
      issues.push({ path, message: 'a gate needs min, max or maxWorsening' });
    if (gate.min !== undefined && gate.max !== undefined && gate.min > gate.max)
      issues.push({ path: `${path}.min`, message: `must be at most max (${gate.max})` });
  });
  return issues;
}

/**
 * A placement's pool, timeout and retries default to its step's own: filled in here, at submission, so the
 * workflow has them as data and never needs the project's code.
 */
function withStepDefaults(placement: StepPlacement): StepPlacement {
  const step = getStep(placement.name);
  if (!step) return placement;
  return {
    ...placement,
    pool: placement.pool ?? step.pool,
    timeout: placement.timeout ?? step.timeout,
    retries: placement.retries ?? step.retries,
  };
}

/**
 * Validates a spec (shape, ranges, the data source and architecture names) and fills in defaults; throws
 * PipelineSpecError. Workers re-validate what they are sent with this: step names are checked at submission
 * (validateSubmission), since only the pool that runs a step has to know it.
 */
export function validatePipeline(input: unknown): PipelineSpec {
  return validate(input, false);
}

/** validatePipeline, and every step a placement names must be registered: what a run is submitted with. */
export function validateSubmission(input: unknown): PipelineSpec {
  return validate(input, true);
}

function validate(input: unknown, checkSteps: boolean): PipelineSpec {
  const parsed = PipelineSpecSchema.safeParse(input);
  const issues: SpecIssue[] = parsed.success
    ? gateIssues(parsed.data)
    : parsed.error.issues.map((i) => ({ path: pathOf(i.path), message: i.message }));
  issues.push(...registryIssues(input, checkSteps));
  if (issues.length > 0 || !parsed.success) throw new PipelineSpecError(issues);
  return { ...parsed.data, steps: parsed.data.steps.map(withStepDefaults) };
}

/** Names of the sources Gantry ships (autocompleted; a project's own are any other string). */
export type BuiltInDataSourceName =
  | 'fashion-mnist'
  | 'idx'
  | 'csv'
  | 'jsonl'
  | 'json'
  | 'parquet'
  | 'arrow'
  | 'image-folder';

type ModelInput = PipelineInput['model'];
type DataInput = PipelineInput['data'];
type PlacementInput = NonNullable<PipelineInput['steps']>[number];

/** A built-in architecture by name, its options typed by its own schema. */
type BuiltInModel = {
  [K in ArchitectureName]: Omit<ModelInput, 'architecture' | 'options'> & {
    architecture: K;
    options?: z.input<(typeof ARCHITECTURES)[K]['options']>;
  };
}[ArchitectureName];

/** The project's own architecture, given as its definition: its options are typed by its schema. */
// biome-ignore lint/suspicious/noExplicitAny: any architecture's options schema
type DefinedModel<O extends z.ZodType = any> = Omit<ModelInput, 'architecture' | 'options'> & {
  architecture: ArchitectureDefinition<O>;
  options?: z.input<O>;
};

/** Any registered architecture by name (a project's own, registered by its project file). */
type NamedModel = Omit<ModelInput, 'architecture'> & { architecture: ArchitectureName | (string & {}) };

/** A step placed by its definition (`{ step: qualityGate, at: 'after-ingest' }`) rather than by name. */
type DefinedPlacement = Omit<PlacementInput, 'name'> & { step: StepDefinition };

/**
 * What an author writes: the spec's fields, where an architecture, a data source or a step may be given as its
 * definition object instead of its name. definePipeline registers those and keeps only their names, so the spec
 * it returns is plain data.
 */
export type PipelineDefinitionInput<O extends z.ZodType = z.ZodType> = Omit<
  PipelineInput,
  'model' | 'data' | 'steps'
> & {
  data: Omit<DataInput, 'source'> & { source: BuiltInDataSourceName | (string & {}) | DataSourceDefinition };
  model: BuiltInModel | DefinedModel<O> | NamedModel;
  steps?: Array<PlacementInput | DefinedPlacement>;
};

/** Replaces definition objects by their names, registering each (a project file registers the same objects again). */
function toPlainInput(input: PipelineDefinitionInput): PipelineInput {
  const { data, model, steps, ...rest } = input;
  const source = data?.source;
  if (source !== null && typeof source === 'object') registerDataSource(source);
  const architecture = model?.architecture;
  if (architecture !== null && typeof architecture === 'object') {
    registerArchitecture(architecture.name, architecture as unknown as Architecture);
  }
  const placements = steps?.map((placement) => {
    if (!('step' in placement)) return placement;
    const { step, ...where } = placement;
    registerStep(step);
    return { name: step.name, ...where };
  });
  return {
    ...rest,
    data: { ...data, source: typeof source === 'object' && source !== null ? source.name : source },
    model: {
      ...model,
      architecture: typeof architecture === 'object' && architecture !== null ? architecture.name : architecture,
    } as ModelInput,
    ...(placements ? { steps: placements } : {}),
  };
}

/**
 * The authoring entry point: `export default definePipeline({ ... })`. Architectures, data sources and steps are
 * named (built-ins autocomplete) or given as their definitions; an unknown name or a bad field throws
 * PipelineSpecError listing every issue and the known names.
 */
export function definePipeline<O extends z.ZodType>(input: PipelineDefinitionInput<O>): PipelineSpec {
  const plain = toPlainInput(input as PipelineDefinitionInput);
  if (projectImports === 0) return validateSubmission(plain);
  try {
    return validateSubmission(plain);
  } catch (error) {
    // Inside a project file: only unknown names may wait for the loader's second look; any other issue is final.
    if (!(error instanceof PipelineSpecError) || error.issues.some((i) => !i.message.startsWith('unknown ')))
      throw error;
    const parsed = PipelineSpecSchema.parse(plain);
    return { ...parsed, steps: parsed.steps.map(withStepDefaults) };
  }
}
