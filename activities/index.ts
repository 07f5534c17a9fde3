import type { ActivityDeps } from './deps';
import { createDeployActivities } from './deploy';
import { createEvaluateActivity } from './evaluate';
import { createMonitorActivities } from './monitor';
import { createRegistryUpdateActivities } from './registry-updates';
import { createImportActivities } from './import-model';
import { createIngestActivity } from './ingest';
import { createPublishActivity } from './publish';
import { createRegisterActivity } from './register';
import { createTrainActivity } from './train';
import { createTrainReplicaActivity } from './train-replica';
import type { ControlActivities, ImportActivities, TrainActivities } from '../workflows/api';

export function createControlActivities(deps: ActivityDeps): ControlActivities & ImportActivities {
  return {
    ingest: createIngestActivity(deps),
    evaluate: createEvaluateActivity(deps),
    register: createRegisterActivity(deps),
    publish: createPublishActivity(deps),
    ...createDeployActivities(deps),
    ...createMonitorActivities(deps),
    ...createRegistryUpdateActivities(deps),
    ...createImportActivities(deps),
  };
}

export function createTrainActivities(deps: ActivityDeps): TrainActivities {
  return { train: createTrainActivity(deps), trainReplica: createTrainReplicaActivity(deps) };
}

export type { ActivityDeps } from './deps';
