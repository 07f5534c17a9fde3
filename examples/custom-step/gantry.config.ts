import { definePipeline, defineProject } from 'gantry';
import { dataQuality } from './steps';

/**
 * A small Fashion-MNIST pipeline whose data must pass a quality gate before anything trains, and a workflow of
 * the project's own (workflows.ts: `reviewed`) in which a person approves the version before it is published.
 *
 *   npx gantry dev                                            # Temporal, a control and a train worker
 *   npx gantry run fashion-gated --json                       # the pipeline, with the gate
 *   npx gantry run fashion-gated --json \
 *     --set 'steps=[{"name":"data-quality","at":"after-ingest","options":{"minRows":100000}}]'   # the gate stops it
 *   npx gantry run reviewed --pipeline fashion-gated          # the workflow: waits for ...
 *   npx gantry approve <workflowId printed above>             # ... this, then publishes
 */
export default defineProject({
  name: 'custom-step',
  steps: [dataQuality],
  pipelines: [
    definePipeline({
      name: 'fashion-gated',
      description: 'Fashion-MNIST on a small slice, gated on its data quality',
      data: { source: 'fashion-mnist', limits: { train: 2000, test: 500 } },
      model: { name: 'fashion-gated', architecture: 'mlp' },
      train: { epochs: 1 },
      evaluation: { minAccuracy: 0.5 },
      steps: [{ name: 'data-quality', at: 'after-ingest', options: { minRows: 1000, maxClassShare: 0.3 } }],
    }),
  ],
  workflows: './workflows.ts',
});
