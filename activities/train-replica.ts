import os from 'node:os';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { saveCheckpoint } from '../training/checkpoint';
import { CollectiveGroup, collectiveKey, deriveAttemptSecret } from '../collectives';
import { createReplicaEngine } from '../training/replica-engine';
import { type StrategyName, strategyRing } from '../training/distributed/strategies';
import { replicaLoop, type StepProgress } from '../training/loop';
import { scaledLearningRate } from '../training/distributed/learning-rate';
import { saveModelToStore } from '../engine/model-files';
import {
  joinJobUpdate,
  replicaProgressSignal,
  trainProgressSignal,
  type ReplicaInput,
  type ReplicaResult,
  type TrainProgress,
} from '../workflows/api';
import type { ActivityDeps } from './deps';
import { epochLogLine, prepareTraining, trainingFailure } from './training-setup';
import { ActivityClock } from './timing';
import { checkedSpec } from './failures';

const PROGRESS_SIGNAL_INTERVAL_MS = 1_000;

/** The address peers reach this trainer at: loopback by default, a routable one across hosts. */
function collectiveHost(): string {
  return process.env.GANTRY_COLLECTIVE_HOST ?? '127.0.0.1';
}

/** Every receive of a collective operation must finish within this (a lost peer is an error, not a hang). */
function collectiveTimeoutMs(): number {
  const value = Number(process.env.GANTRY_COLLECTIVE_TIMEOUT_MS ?? '60000');
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(
      `GANTRY_COLLECTIVE_TIMEOUT_MS must be a positive number, got "${process.env.GANTRY_COLLECTIVE_TIMEOUT_MS}"`,
    );
  return value;
}

/**
 * One replica of a data-parallel job: joins the job workflow's rendezvous, forms the ring with
 * its peers, and trains its shard of every global batch (training/loop.ts).
 * Rank 0 writes the checkpoints and the model; every replica heartbeats its progress.
 */
export function createTrainReplicaActivity(deps: ActivityDeps) {
  return async function trainReplica(input: ReplicaInput): Promise<ReplicaResult> {
    const spec = checkedSpec(input.spec);
    const { runId, dataset, jobId, jobAttempt, replica } = input;
    const context = Context.current();
    const clock = new ActivityClock();
    const started = performance.now();
    const { backend, checkpointPrefix, restored, model, optimizer, history, loop } = await prepareTraining(
      deps,
      runId,
      spec,
      dataset,
      clock,
    );
    const start = restored
      ? {
          epoch: restored.manifest.epochsCompleted,
          stepInEpoch: restored.manifest.stepInEpoch,
          globalStep: restored.manifest.globalStep,
        }
      : { epoch: 0, stepInEpoch: 0, globalStep: 0 };

    const group = await CollectiveGroup.listen({
      jobId,
      attempt: jobAttempt,
      // Derived here from the worker key, never handed out through Temporal (collectives/secret.ts).
      secret: deriveAttemptSecret(collectiveKey(), jobId, jobAttempt),
      host: collectiveHost(),
      timeoutMs: collectiveTimeoutMs(),
    });
    // A cancelled attempt closes the sockets at once, so peers fail fast instead of timing out.
    const onCancel = () => void group.close();
    context.cancellationSignal.addEventListener('abort', onCancel);
    const { engine, execution } = await createReplicaEngine(
      model,
      optimizer,
      dataset.featureShape,
      dataset.numClasses,
      'auto',
      dataset.task,
    );
    try {
      // The rendezvous can take as long as the slowest trainer needs to start: keep heartbeating.
      const heartbeat = setInterval(() => context.heartbeat({ phase: 'rendezvous', replica }), 1_000);
      let join;
      try {
        join = await deps.client.workflow.getHandle(jobId).executeUpdate(joinJobUpdate, {
          args: [
            {
              jobId,
              jobAttempt,
              replica,
              host: group.address.host,
              port: group.address.port,
              identity: `${os.hostname()}:${process.pid}`,
            },
          ],
        });
      } finally {
        clearInterval(heartbeat);
      }
      if (spec.train.strategy === 'mirrored') {
        const hosts = new Set(join.peers.map((p) => p.host));
        if (hosts.size > 1) {
          throw ApplicationFailure.nonRetryable(
            `mirrored keeps every replica on one host, but they joined from ${[...hosts].join(', ')}; ` +
              'use multi-worker-mirrored across hosts',
            'InvalidSpec',
          );
        }
      }
      await group.connect({ rank: join.rank, peers: join.peers });
      const transport = group.transport;
      context.log.info(
        `replica ${replica} is rank ${join.rank} of ${join.worldSize} ` +
          `(attempt ${jobAttempt}, ${spec.train.strategy}, ${backend.name}, ${execution.mode}, ` +
          `all-reduce: ${transport.allReduce}${transport.reason ? ` — ${transport.reason}` : ''})`,
      );

      const jobHandle = deps.client.workflow.getHandle(jobId);
      const runHandle = deps.client.workflow.getHandle(runId);
      let lastSignal = 0;
      let lastValAccuracy = history.at(-1)?.valAccuracy ?? null;
      let lastStep: StepProgress | undefined;
      const report = (step: StepProgress, force = false) => {
        lastStep = step;
        const progress: TrainProgress = {
          ...step,
          attempt: jobAttempt,
          valAccuracy: lastValAccuracy,
          resumedFromEpoch: restored ? start.epoch : null,
          backend: backend.name,
          // The workflows keep the run's and each rank's curve from it (workflows/curve.ts).
          lastEpoch: history.at(-1) ?? null,
        };
        context.heartbeat(progress);
        const now = performance.now();
        if (!force && now - lastSignal < PROGRESS_SIGNAL_INTERVAL_MS) return;
        lastSignal = now;
        // Progress is best effort: a lost signal must never fail the training.
        jobHandle.signal(replicaProgressSignal, { jobAttempt, rank: join.rank, progress }).catch(() => {});
        if (join.rank === 0) runHandle.signal(trainProgressSignal, progress).catch(() => {});
      };
      const checkpoint = (position: { epoch: number; stepInEpoch: number; globalStep: number }) =>
        saveCheckpoint(deps.store, checkpointPrefix, {
          model,
          optimizer,
          epochsCompleted: position.epoch,
          stepInEpoch: position.stepInEpoch,
          globalStep: position.globalStep,
          history,
          attempt: jobAttempt,
        });

      let result;
      try {
        result = await replicaLoop({
          engine,
          ring: strategyRing(spec.train.strategy as StrategyName, group, {
            verifyReplicas: spec.train.verifyReplicas,
          }),
          ...loop,
          epochs: Math.min(input.untilEpoch ?? loop.epochs, loop.epochs),
          start,
          learningRateAt: (epoch, progress) => scaledLearningRate(spec.train, join.worldSize, epoch, progress),
          checkpointEverySteps: spec.train.checkpointEverySteps,
          signal: context.cancellationSignal,
          onStep: (step) => report(step, step.step === step.stepsPerEpoch),
          onCheckpoint: async (position) => {
            await checkpoint(position);
          },
          onEpochEnd: async (metrics, position) => {
            history.push(metrics);
            lastValAccuracy = metrics.valAccuracy;
            if (lastStep) report(lastStep, true);
            await checkpoint(position);
            context.log.info(epochLogLine(metrics, spec.train.epochs));
          },
        });
      } catch (error) {
        throw trainingFailure(context.cancellationSignal, error);
      }
      const seconds = (performance.now() - started) / 1000;
      if (join.rank !== 0) return { rank: join.rank, worldSize: join.worldSize, steps: result.steps, trained: null };
      const samples = result.steps * spec.train.batchSize * join.worldSize;
      const modelUri = await clock.part('save', () => saveModelToStore(deps.store, `runs/${runId}/model`, model));
      return {
        rank: 0,
        worldSize: join.worldSize,
        steps: result.steps,
        trained: {
          modelUri,
          history,
          attempt: jobAttempt,
          resumedFromEpoch: restored ? start.epoch : null,
          backend,
          execution,
          samplesPerSecond: samples / Math.max(1e-3, seconds),
          seconds,
          distribution: { strategy: spec.train.strategy, replicas: join.worldSize, allReduce: transport.allReduce },
          // The rendezvous, the epochs and the checkpoints are the run's part not named here.
          timing: clock.timing(),
        },
      };
    } finally {
      context.cancellationSignal.removeEventListener('abort', onCancel);
      await group.close();
      engine.dispose();
      model.dispose();
      optimizer.dispose();
    }
  };
}
