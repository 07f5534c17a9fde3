import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ingestDataset, type DatasetRef } from '../data/ingest';
import { getDataSource } from '../data/sources';
import type { ActivityDeps } from './deps';
import { asActivityFailure, checkedSpec } from './failures';
import type { IngestInput } from '../workflows/api';
import type { Timed } from '../workflows/timings-api';
import { ActivityClock } from './timing';

export function createIngestActivity(deps: ActivityDeps) {
  return async function ingest({ runId, spec: rawSpec }: IngestInput): Promise<DatasetRef & Timed> {
    const clock = new ActivityClock();
    const spec = checkedSpec(rawSpec);
    const context = Context.current();
    try {
      const dataset = await ingestDataset(
        {
          source: spec.data.source,
          // A relative data.path is the project's: the worker runs in the project folder.
          path: path.resolve(spec.data.path ?? getDataSource(spec.data.source).defaultLocation),
          seed: spec.data.seed,
          validationFraction: spec.data.validationFraction,
          limits: spec.data.limits,
          ...(spec.data.image ? { image: spec.data.image } : {}),
          onMalformed: spec.data.onMalformed,
          testFraction: spec.data.testFraction,
          ...(spec.data.label !== undefined ? { label: spec.data.label } : {}),
          ...(spec.data.task !== undefined ? { task: spec.data.task } : {}),
          columns: spec.data.columns,
          missing: spec.data.missing,
          onAnomaly: spec.data.onAnomaly,
          statisticsKey: `pipelines/${spec.name}/last-statistics.json`,
          schemaKey: `pipelines/${spec.name}/schema.json`,
          runId,
        },
        deps.store,
        (message) => {
          context.heartbeat({ message });
          context.log.info(message);
        },
      );
      return { ...dataset, timing: clock.timing() };
    } catch (error) {
      throw asActivityFailure(error);
    }
  };
}
