import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { loadSplit } from '../data/shards';
import { activeBackend } from '../engine/backend';
import { inputFeedOf } from '../training/batches';
import { evaluateModel, ModelMetricsSchema, type ModelMetrics } from '../training/evaluate';
import { loadDatasetPreprocessing } from './training-setup';
import type * as tfType from '@tensorflow/tfjs';
import { deserializeModel, loadModelFromStore, WEIGHTS_FILE } from '../engine/model-files';
import type { ActivityDeps } from './deps';
import { decideBlessing } from './blessing';
import { measurePublishedFolder } from './import-model';
import { SavedModelError } from '../engine/saved-model';
import { asActivityFailure, checkedSpec } from './failures';
import { readRegistry } from '../control/registry';
import type { EvaluateInput, EvaluationResult } from '../workflows/api';
import type { BackendReport } from '../engine/backend';
import type { Timed } from '../workflows/timings-api';
import { ActivityClock } from './timing';

export function createEvaluateActivity(deps: ActivityDeps) {
  return async function evaluate({
    runId,
    spec: rawSpec,
    dataset,
    modelUri,
  }: EvaluateInput): Promise<EvaluationResult & Timed> {
    const clock = new ActivityClock();
    const spec = checkedSpec(rawSpec);
    const context = Context.current();
    const backend = await activeBackend();
    let test;
    try {
      test = await clock.part('load test split', () => loadSplit(deps.store, dataset, 'test'));
    } catch (error) {
      throw asActivityFailure(error);
    }
    const measure = async (label: string, load: () => Promise<tfType.LayersModel>): Promise<ModelMetrics> => {
      context.heartbeat({ evaluating: label });
      const model = await load();
      try {
        // A model with several inputs takes the test rows split by this dataset's preprocessing.
        const feed =
          model.inputs.length > 1 ? inputFeedOf(model, await loadDatasetPreprocessing(deps, dataset)) : undefined;
        return await evaluateModel(
          model,
          test,
          dataset.featureShape,
          dataset.numClasses,
          undefined,
          dataset.task,
          feed,
        );
      } finally {
        model.dispose();
      }
    };

    const candidate = await clock.part('candidate', () =>
      measure('candidate', () => loadModelFromStore(deps.store, modelUri)),
    );

    // The champion is judged on this run's test split, so the comparison is like for like.
    const registry = await clock.part('read registry', () => readRegistry(deps.client, spec.model.name));
    const championVersion = registry?.aliases[spec.deployment.alias];
    const championEntry = registry?.versions.find((v) => v.version === championVersion && v.publishedPath);
    let champion: EvaluationResult['champion'] = null;
    const notes: string[] = [];
    const source = championEntry?.lineage.source;
    const championStarted = performance.now();
    // A published version never changes, nor does a dataset's test split: its metrics on them, once measured on
    // this backend, are looked up (each tuning trial and rerun on the same data would measure them again).
    const memoKey = championEntry?.publishedPath
      ? championMetricsKey(spec.model.name, championEntry.publishedPath, dataset.fingerprint, backend)
      : null;
    const remembered = memoKey ? await readChampionMetrics(deps.store, deps.store.uri(memoKey)) : null;
    if (championEntry && remembered) {
      champion = { version: championEntry.version, metrics: remembered };
    } else if (championEntry?.publishedPath && source?.format === 'saved_model') {
      // An imported SavedModel champion (gantry models import) runs through its signature when it fits the data.
      try {
        context.heartbeat({ evaluating: `champion v${championEntry.version}` });
        const metrics = await measurePublishedFolder(championEntry.publishedPath, source.signature, dataset, test);
        champion = { version: championEntry.version, metrics };
      } catch (error) {
        if (!(error instanceof SavedModelError)) throw error;
        notes.push(`note: champion v${championEntry.version} cannot be measured on this data: ${error.message}`);
      }
    } else if (championEntry?.publishedPath) {
      const folder = championEntry.publishedPath;
      champion = {
        version: championEntry.version,
        metrics: await measure(`champion v${championEntry.version}`, async () =>
          deserializeModel(
            await readFile(path.join(folder, 'model.json'), 'utf8'),
            await readFile(path.join(folder, WEIGHTS_FILE)),
          ),
        ),
      };
    }

    if (championEntry?.publishedPath) clock.add('champion', performance.now() - championStarted);
    if (champion && memoKey && !remembered) await deps.store.put(memoKey, JSON.stringify(champion.metrics));

    const gated = decideBlessing(candidate, champion, spec.evaluation);
    const decision = { ...gated, reasons: [...gated.reasons, ...notes] };
    const report = {
      runId,
      model: spec.model.name,
      datasetFingerprint: dataset.fingerprint,
      candidate,
      champion,
      ...decision,
      gate: spec.evaluation,
      backend,
    };
    const reportUri = await clock.part('report', () =>
      deps.store.put(`runs/${runId}/evaluation.json`, JSON.stringify(report, null, 2)),
    );
    const timing = clock.timing();
    return { candidate, champion, blessed: decision.blessed, reasons: decision.reasons, reportUri, backend, timing };
  };
}

/** Where a champion's metrics on one dataset's test split, measured on one backend, are kept. */
function championMetricsKey(model: string, publishedPath: string, fingerprint: string, backend: BackendReport): string {
  const id = createHash('sha256')
    .update(JSON.stringify({ publishedPath, fingerprint, backend: backend.name, engine: backend.engineBackend }))
    .digest('hex');
  return `models/${model}/champion-metrics/${id}.json`;
}

/** The remembered metrics, or null when there are none or they do not parse (then they are measured again). */
async function readChampionMetrics(store: ActivityDeps['store'], uri: string): Promise<ModelMetrics | null> {
  try {
    if (!(await store.exists(uri))) return null;
    return ModelMetricsSchema.parse(JSON.parse((await store.get(uri)).toString('utf8')));
  } catch {
    return null;
  }
}
