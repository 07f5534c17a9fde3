export { definePipeline, validatePipeline, validateSubmission, PipelineSpecError, type SpecIssue } from './define';
export { applyOverrides } from './overrides';
export { loadPipeline, BUILT_IN_PIPELINES } from './catalog';
export * from './spec';
