import { Context } from '@temporalio/activity';
import { ingestDataset, type DatasetRef } from '../data/ingest';
import { getDataSource } from '../data/sources';
import type { ActivityDeps } from './deps';
import { asActivityFailure, checkedSpec } from './failures';
import type { IngestInput } from '../workflows/api';

export function createIngestActivity(deps: ActivityDeps) {
  return async function ingest({ runId, spec: rawSpec }: IngestInput): Promise<DatasetRef> {
    const spec = checkedSpec(rawSpec);
    const context = Context.current();
    try {
      return await ingestDataset(
        {
          source: spec.data.source,
          path: spec.data.path ?? getDataSource(spec.data.source).defaultLocation,
          seed: spec.data.seed,
          validationFraction: spec.data.validationFraction,
          limits: spec.data.limits,
          ...(spec.data.image ? { image: spec.data.image } : {}),
          onMalformed: spec.data.onMalformed,
          testFraction: spec.data.testFraction,
          statisticsKey: `pipelines/${spec.name}/last-statistics.json`,
          runId,
        },
        deps.store,
        (message) => {
          context.heartbeat({ message });
          context.log.info(message);
        },
      );
    } catch (error) {
      throw asActivityFailure(error);
    }
  };
}
