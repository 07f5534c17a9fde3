/**
 * Gantry's public API: what a project imports (`import { definePipeline } from 'gantry'`). Everything else in the
 * package is internal and may change; `gantry/workflow` has the stages for a project's own Temporal workflows.
 */
export {
  defineArchitecture,
  defineDataSource,
  defineProject,
  defineStep,
  tabularInputs,
  type ArchitectureDefinition,
  type ArchitectureInput,
  type CategoricalInput,
  type DataSourceDefinition,
  type ProjectDefinition,
  type StepContext,
  type StepDefinition,
  type StepOutputs,
  type StepResult,
  type TabularInputs,
  type TabularSourceDefinition,
} from './pipelines/project';
export {
  definePipeline,
  validatePipeline,
  PipelineSpecError,
  type BuiltInDataSourceName,
  type PipelineDefinitionInput,
  type SpecIssue,
} from './pipelines/define';
export { loadProject, ProjectError, type LoadedProject } from './pipelines/load-project';
export {
  METRIC_NAMES,
  STEP_POINTS,
  type MetricName,
  type PipelineInput,
  type PipelineSpec,
  type StepPlacement,
  type StepPoint,
} from './pipelines/spec';
export type { ArchitectureName } from './training/architectures';
/** The zod Gantry validates with, for architectures' option schemas: the same version as Gantry's own. */
export { z } from 'zod';
/** A client of Gantry's model server (and TF Serving's REST API): predictions from raw records, feedback. */
export {
  ServingClient,
  ServingClientError,
  type PredictAnswer,
  type RecordsAnswer,
  type ServingClientOptions,
} from './serving/client';
