// Every workflow the control pool runs; the worker bundles this file.
//
// Upgrade rule: a `.gantry/` home keeps registry, rollout and experiment workflows running across releases, and a
// new release's workers replay their histories. A change to workflow code that alters the commands an existing
// history recorded (an activity, timer or child added, removed or reordered; a changed activity type or workflow
// id) goes behind `if (patched('<id>'))` (old runs take the old path), and a later release, once no run from
// before the patch is open, changes it to `deprecatePatch('<id>')`. test/replay/replay.test.ts (in `make test`)
// replays every recorded history of every supported release against this bundle and fails on a change that
// breaks one. Before each release, `npm run record-histories -- --release <release>` records the new release's
// histories into test/replay/histories/<release>/; keep the older folders (drop one only with the release).
export { retrainWorkflow } from './retrain';
export { registryWorkflow } from './registry';
export { trainJobWorkflow } from './train-job';
export { rolloutWorkflow } from './rollout';
export { experimentWorkflow } from './experiment';
export { importModelWorkflow } from './import-model';
export { batchPredictWorkflow } from './batch-predict';
export { tuneWorkflow } from './tune';
