import { Context } from '@temporalio/activity';
import { saveCheckpoint } from '../training/checkpoint';
import { saveModelToStore } from '../engine/model-files';
import { learningRateAt } from '../training/optimizers';
import { trainLoop, type ExecutionReport } from '../training/trainer';
import { trainProgressSignal, type TrainInput, type TrainProgress, type TrainResult } from '../workflows/api';
import type { ActivityDeps } from './deps';
import { epochLogLine, prepareTraining, trainingFailure } from './training-setup';
import { checkedSpec } from './failures';
import { ActivityClock } from './timing';
import type { Timed } from '../workflows/timings-api';

/** How often the trainer tells its workflow where it is (heartbeats are throttled by the SDK). */
const PROGRESS_SIGNAL_INTERVAL_MS = 1_000;

export function createTrainActivity(deps: ActivityDeps) {
  return async function train({ runId, spec: rawSpec, dataset, untilEpoch }: TrainInput): Promise<TrainResult & Timed> {
    const clock = new ActivityClock();
    const spec = checkedSpec(rawSpec);
    const context = Context.current();
    const { attempt, workflowExecution } = context.info;
    const started = performance.now();
    const { backend, checkpointPrefix, restored, model, optimizer, history, loop } = await prepareTraining(
      deps,
      runId,
      spec,
      dataset,
      clock,
    );
    const fallback = backend.fallbackReason ? `; fell back because ${backend.fallbackReason}` : '';
    context.log.info(`training ${spec.model.architecture} on ${backend.name} (attempt ${attempt})${fallback}`);
    if (restored)
      context.log.info(`resuming from ${restored.manifestUri}: ${restored.manifest.epochsCompleted} epochs done`);
    const resumedFromEpoch = restored ? restored.manifest.epochsCompleted : null;

    // The run this activity belongs to (falls back to the run id for activities started outside a workflow).
    const workflow = deps.client.workflow.getHandle(workflowExecution?.workflowId ?? runId, workflowExecution?.runId);
    let lastSignal = 0;
    let trainedSamples = 0;
    const trainingStarted = performance.now();
    const report = (progress: TrainProgress, force: boolean) => {
      context.heartbeat(progress);
      const now = performance.now();
      if (force || now - lastSignal >= PROGRESS_SIGNAL_INTERVAL_MS) {
        lastSignal = now;
        // Progress is best effort: a lost signal must never fail the training.
        workflow
          .signal(trainProgressSignal, progress)
          .catch((error: Error) => context.log.warn(`progress signal failed: ${error.message}`));
      }
    };
    const samplesPerSecond = () => trainedSamples / Math.max(1e-3, (performance.now() - trainingStarted) / 1000);

    let lastValAccuracy = history.at(-1)?.valAccuracy ?? null;
    // Sent with every report after it: the workflow keeps the run's curve from it (workflows/curve.ts).
    let lastEpoch = history.at(-1) ?? null;
    let lastStep: TrainProgress | undefined;
    let execution: ExecutionReport = { mode: 'eager' };
    let checkpointMs = 0;
    try {
      await trainLoop({
        ...loop,
        epochs: Math.min(untilEpoch ?? loop.epochs, loop.epochs),
        startEpoch: resumedFromEpoch ?? 0,
        startGlobalStep: restored?.manifest.globalStep ?? 0,
        learningRateAt: (epoch) =>
          learningRateAt(spec.train.learningRateSchedule, spec.train.learningRate, epoch, spec.train.epochs),
        signal: context.cancellationSignal,
        onExecution: (report) => {
          execution = report;
          context.log.info(
            `steps run ${report.mode === 'graph' ? 'as one TensorFlow graph each' : `eagerly (${report.reason})`}`,
          );
        },
        onStep: (step) => {
          // Every batch is full but an epoch's last, which holds the remainder.
          const lastBatch = loop.train.count - (step.stepsPerEpoch - 1) * spec.train.batchSize;
          trainedSamples += step.step === step.stepsPerEpoch ? lastBatch : spec.train.batchSize;
          lastStep = {
            ...step,
            runId,
            attempt,
            valAccuracy: lastValAccuracy,
            resumedFromEpoch,
            samplesPerSecond: samplesPerSecond(),
            backend: backend.name,
            lastEpoch,
          };
          report(lastStep, step.step === step.stepsPerEpoch);
        },
        onEpochEnd: async (metrics, { globalStep }) => {
          history.push(metrics);
          lastValAccuracy = metrics.valAccuracy;
          lastEpoch = metrics;
          // The epoch's validation metrics reach the run now, not with the next epoch's first step.
          if (lastStep) report({ ...lastStep, valAccuracy: metrics.valAccuracy, lastEpoch }, true);
          const checkpointStarted = performance.now();
          await saveCheckpoint(deps.store, checkpointPrefix, {
            model,
            optimizer,
            epochsCompleted: metrics.epoch,
            globalStep,
            history,
            attempt,
          });
          checkpointMs += performance.now() - checkpointStarted;
          context.log.info(epochLogLine(metrics, spec.train.epochs));
        },
      });
    } catch (error) {
      throw trainingFailure(context.cancellationSignal, error);
    }
    clock.add('epochs', performance.now() - trainingStarted - checkpointMs);
    clock.add('checkpoint', checkpointMs);

    const modelUri = await clock.part('save', () => saveModelToStore(deps.store, `runs/${runId}/model`, model));
    model.dispose();
    optimizer.dispose();
    return {
      modelUri,
      history,
      attempt,
      resumedFromEpoch,
      backend,
      execution,
      samplesPerSecond: samplesPerSecond(),
      seconds: (performance.now() - started) / 1000,
      timing: clock.timing(),
    };
  };
}
