import { architectureNames, getArchitecture } from '../training/architectures';
import { TASK_METRICS, taskOfMetric, type MetricName } from '../training/metrics';
import { dataSourceNames, findDataSource } from '../data/sources';
import { fieldPath, issueLines } from '../validation/issues';
import { PipelineSpecSchema, type PipelineInput, type PipelineSpec } from './spec';

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

/** Names checked against the registries the workers load: an unknown one must not start a run. */
function registryIssues(input: unknown): SpecIssue[] {
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

/** Validates a spec (shape, ranges, registry names) and fills in defaults; throws PipelineSpecError. */
export function validatePipeline(input: unknown): PipelineSpec {
  const parsed = PipelineSpecSchema.safeParse(input);
  const issues: SpecIssue[] = parsed.success
    ? gateIssues(parsed.data)
    : parsed.error.issues.map((i) => ({ path: pathOf(i.path), message: i.message }));
  issues.push(...registryIssues(input));
  if (issues.length > 0 || !parsed.success) throw new PipelineSpecError(issues);
  return parsed.data;
}

/** The authoring entry point: `export default definePipeline({ ... })`. */
export function definePipeline(input: PipelineInput): PipelineSpec {
  return validatePipeline(input);
}
