// Every workflow the control pool runs; the worker bundles this file.
export { retrainWorkflow } from './retrain';
export { registryWorkflow } from './registry';
export { trainJobWorkflow } from './train-job';
export { rolloutWorkflow } from './rollout';
export { experimentWorkflow } from './experiment';
export { importModelWorkflow } from './import-model';
