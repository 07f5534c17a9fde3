import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { ImportActivities, ImportModelInput, ImportResult } from './api';
import { workflowNow } from './deploy-activities';

/**
 * `gantry models import`: a model from elsewhere (a SavedModel, a tfjs layers model) becomes the next version of a
 * model, durably. The folder is checked, copied into the artifact store, evaluated on the test split of a dataset
 * the model's registry knows (when its signature fits), registered with its source in the lineage, and — when
 * blessed — written into the model repository and marked published; no alias moves. A worker that dies at any step
 * is replaced by a retry of that step: each activity is idempotent, keyed by this workflow's id.
 */

const activities = proxyActivities<ImportActivities>({
  startToCloseTimeout: '30m',
  heartbeatTimeout: '2m',
  retry: { initialInterval: '1s', maximumAttempts: 5, nonRetryableErrorTypes: ['ImportRefused', 'DatasetError'] },
});

export async function importModelWorkflow(input: ImportModelInput): Promise<ImportResult> {
  const importId = workflowInfo().workflowId;
  const importedAt = workflowNow();
  const inspection = await activities.inspectImport({ path: input.path, signature: input.signature });
  const { artifactUri } = await activities.stageImport({ importId, path: input.path, inspection });
  const evaluation = await activities.evaluateImport({
    importId,
    model: input.model,
    artifactUri,
    inspection,
    ...(input.dataset === undefined ? {} : { dataset: input.dataset }),
  });
  const candidate = evaluation.evaluation?.candidate;
  const champion = evaluation.evaluation?.champion ?? null;
  const metrics = candidate
    ? {
        testAccuracy: candidate.accuracy,
        testLoss: candidate.loss,
        perClassAccuracy: candidate.perClassAccuracy,
        task: candidate.task,
        values: candidate.metrics,
      }
    : null;
  const { version } = await activities.registerImport({
    model: input.model,
    request: {
      artifactUri,
      metrics,
      lineage: {
        runId: importId,
        datasetFingerprint: evaluation.datasetFingerprint ?? '',
        spec: null,
        parentVersion: champion?.version ?? null,
        gitCommit: null,
        backend: 'none (imported)',
        source: {
          kind: 'import',
          path: input.path,
          format: inspection.format,
          signature: inspection.signature,
          importedAt,
          evaluatedOn: evaluation.evaluation ? evaluation.datasetFingerprint : null,
          unevaluatedReason: evaluation.reason,
        },
      },
      blessed: evaluation.blessed,
      reasons: evaluation.reasons,
    },
  });
  const published = evaluation.blessed
    ? await activities.publishImport({ importId, model: input.model, version, artifactUri, inspection, evaluation })
    : null;
  return {
    model: input.model,
    version,
    importId,
    format: inspection.format,
    signature: inspection.signature,
    blessed: evaluation.blessed,
    published: published !== null,
    publishedPath: published?.publishedPath ?? null,
    evaluated: evaluation.evaluation !== null,
    reason: evaluation.reason,
    datasetFingerprint: evaluation.datasetFingerprint,
    metrics,
    champion: champion ? { version: champion.version, metrics: champion.metrics.metrics } : null,
    reasons: evaluation.reasons,
  };
}
