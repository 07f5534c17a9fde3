import type { ActivityDeps } from './deps';
import { createDeployActivities } from './deploy';
import { createEvaluateActivity } from './evaluate';
import { createMonitorActivities } from './monitor';
import { createRegistryUpdateActivities } from './registry-updates';
import { createImportActivities } from './import-model';
import { createAssembleActivity, createPlanActivity, createPredictShardActivity } from './batch-predict';
import { createIngestActivity } from './ingest';
import { createPublishActivity } from './publish';
import { createRegisterActivity } from './register';
import { createTrainActivity } from './train';
import { createTrainReplicaActivity } from './train-replica';
import type { ControlActivities, ImportActivities, TrainActivities } from '../workflows/api';
import type { BatchPredictActivities } from '../workflows/batch-predict-api';

export function createControlActivities(
  deps: ActivityDeps,
): ControlActivities & ImportActivities & Omit<BatchPredictActivities, 'predictShard'> {
  return {
    ingest: createIngestActivity(deps),
    evaluate: createEvaluateActivity(deps),
    register: createRegisterActivity(deps),
    publish: createPublishActivity(deps),
    ...createDeployActivities(deps),
    ...createMonitorActivities(deps),
    ...createRegistryUpdateActivities(deps),
    ...createImportActivities(deps),
    planBatchPredict: createPlanActivity(),
    assemblePredictions: createAssembleActivity(),
  };
}

export function createTrainActivities(
  deps: ActivityDeps,
): TrainActivities & Pick<BatchPredictActivities, 'predictShard'> {
  return {
    train: createTrainActivity(deps),
    trainReplica: createTrainReplicaActivity(deps),
    // Batch prediction's shards run on the train pool unless a job names the predict pool.
    predictShard: createPredictShardActivity(),
  };
}

/** The `predict` pool's activities: batch prediction's shards only. */
export function createPredictActivities(): Pick<BatchPredictActivities, 'predictShard'> {
  return { predictShard: createPredictShardActivity() };
}

export type { ActivityDeps } from './deps';
