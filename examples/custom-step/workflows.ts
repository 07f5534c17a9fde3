import {
  approval,
  datasetStepOutputs,
  evaluate,
  ingest,
  publish,
  register,
  step,
  train,
  type PipelineRun,
} from 'gantry/workflows';

/**
 * The pipeline's stages composed by hand, for a shape a spec cannot say: the data-quality step, training and
 * evaluation as usual, then the registered version waits for a person (`gantry approve <workflowId>`) before it is
 * published. No approval within `approvalTimeout` (default 1 day) leaves it registered, unpublished.
 */
export async function reviewed(run: PipelineRun & { approvalTimeout?: string }) {
  const dataset = await ingest(run);
  const quality = await step(run, 'data-quality', {
    at: 'after-ingest',
    options: run.spec.steps.find((s) => s.name === 'data-quality')?.options ?? {},
    outputs: {
      dataset: datasetStepOutputs(dataset),
      steps: {},
    },
  });
  if (quality.stop !== null) return { status: 'stopped', reason: quality.stop, quality: quality.data };

  const trained = await train(run, dataset);
  const evaluation = await evaluate(run, dataset, trained);
  const steps = [{ name: 'data-quality', at: 'after-ingest' as const, data: quality.data }];
  const { version } = await register(run, { dataset, trained, evaluation, steps });
  if (!evaluation.blessed) return { status: 'not-blessed', version, reasons: evaluation.reasons };

  const decision = await approval(`publish v${version} of ${run.spec.model.name}`, {
    timeout: run.approvalTimeout ?? '1d',
  });
  if (!decision.approved) return { status: 'not-approved', version };
  const { publishedPath } = await publish(run, { version, trained, evaluation });
  return { status: 'published', version, publishedPath, approvedBecause: decision.reason, quality: quality.data };
}
