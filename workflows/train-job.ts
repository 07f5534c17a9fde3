import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  joinJobUpdate,
  jobStateQuery,
  replicaProgressSignal,
  type JobState,
  type ReplicaResult,
  type TrainActivities,
  type TrainJobInput,
  type TrainResult,
} from './api';
import { recordEpoch } from './curve';
import type { Timed } from './timings-api';

/**
 * One synchronous data-parallel training job (after tf.distribute's multi-worker strategies): N
 * replica activities on the train task queue, wherever train workers run. This workflow is
 * their rendezvous — each replica opens its collective socket, then joins by Update with its
 * address and gets back its rank and the peer list once all have joined — and their supervisor:
 * if any replica fails (heartbeat timeout, broken connection, crash) the whole attempt stops and
 * a new one starts from rank 0's last checkpoint, with the same N, or fewer if `train.elastic`
 * allows and trainers are missing.
 */

export async function trainJobWorkflow({
  runId,
  spec,
  dataset,
  taskQueue,
  untilEpoch,
}: TrainJobInput): Promise<TrainResult & Timed> {
  const jobId = workflowInfo().workflowId;
  const wanted = spec.train.replicas;
  const activities = proxyActivities<TrainActivities>({
    taskQueue,
    startToCloseTimeout: '7d',
    heartbeatTimeout: spec.train.heartbeatTimeout,
    // The job, not Temporal's retry, restarts replicas: all of an attempt's replicas go together.
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });

  const state: JobState = {
    jobId,
    strategy: spec.train.strategy,
    replicasWanted: wanted,
    attempt: 0,
    phase: 'rendezvous',
    worldSize: null,
    replicas: [],
    attempts: [],
  };
  /** Set when the attempt's membership is final: all joined, or fewer (elastic) at the deadline. */
  let rendezvousClosed = false;
  /** Set when the attempt failed: replicas still waiting at the rendezvous are turned away. */
  let attemptOver = false;

  setHandler(jobStateQuery, () => state);
  setHandler(
    joinJobUpdate,
    async (request) => {
      state.replicas.push({
        replica: request.replica,
        rank: state.replicas.length,
        host: request.host,
        port: request.port,
        identity: request.identity,
        progress: null,
      });
      const attempt = state.attempt;
      await condition(() => rendezvousClosed || attemptOver || state.attempt !== attempt);
      const me = state.replicas.find((r) => r.replica === request.replica);
      if (attemptOver || state.attempt !== attempt || !me)
        throw ApplicationFailure.nonRetryable(
          `attempt ${attempt} of job ${jobId} ended before the rendezvous completed`,
          'StaleAttempt',
        );
      return {
        rank: me.rank,
        worldSize: state.replicas.length,
        peers: state.replicas.map((r) => ({ rank: r.rank, host: r.host, port: r.port })),
      };
    },
    {
      validator: (request) => {
        if (request.jobId !== jobId) throw new Error(`job id "${request.jobId}" does not match this job "${jobId}"`);
        if (request.jobAttempt !== state.attempt)
          throw new Error(`attempt ${request.jobAttempt} is over; this job is on attempt ${state.attempt}`);
        if (rendezvousClosed) throw new Error(`the rendezvous of attempt ${state.attempt} is closed`);
        if (state.replicas.some((r) => r.replica === request.replica))
          throw new Error(`replica ${request.replica} already joined attempt ${state.attempt}`);
      },
    },
  );
  setHandler(replicaProgressSignal, ({ jobAttempt, rank, progress }) => {
    const replica = state.replicas.find((r) => r.rank === rank);
    if (jobAttempt !== state.attempt || !replica) return;
    replica.progress = progress;
    if (progress.lastEpoch) recordEpoch((replica.curve ??= []), progress.lastEpoch, jobAttempt);
  });

  const rendezvousMs = spec.train.rendezvousTimeout;
  let lastError = '';
  for (let attempt = 1; attempt <= spec.train.maxAttempts; attempt++) {
    state.attempt = attempt;
    state.phase = 'rendezvous';
    state.replicas = [];
    state.worldSize = null;
    rendezvousClosed = false;
    attemptOver = false;

    const scopes = Array.from({ length: wanted }, () => new CancellationScope());
    const settled: (ReplicaResult | Error | undefined)[] = Array.from({ length: wanted });
    const runs = scopes.map((scope, replica) =>
      scope
        .run(() =>
          activities.trainReplica({
            runId,
            spec,
            dataset,
            jobId,
            jobAttempt: attempt,
            replica,
            // A study's rung stops early; a run's job trains to train.epochs as it always did.
            ...(untilEpoch !== undefined ? { untilEpoch } : {}),
          }),
        )
        .then(
          (result) => {
            settled[replica] = result;
          },
          (error: Error) => {
            settled[replica] = error;
          },
        ),
    );
    /** Replicas called off because the attempt went on without them: their cancellation is no failure. */
    const calledOff = new Set<number>();
    const failed = () => settled.some((s, replica) => s instanceof Error && !calledOff.has(replica));

    const allJoined = await condition(() => state.replicas.length === wanted || failed(), rendezvousMs);
    const minimum = spec.train.elastic?.minReplicas ?? wanted;
    if (!failed() && (allJoined || state.replicas.length >= minimum)) {
      // Replicas that never joined (no free trainer) are called off; the attempt goes on without them.
      const joined = new Set(state.replicas.map((r) => r.replica));
      scopes.forEach((scope, replica) => {
        if (joined.has(replica)) return;
        calledOff.add(replica);
        scope.cancel();
      });
      rendezvousClosed = true;
      state.worldSize = state.replicas.length;
      state.phase = 'training';
      await condition(() => failed() || state.replicas.every((r) => settled[r.replica] !== undefined));
    }

    if (!failed() && rendezvousClosed) {
      const rank0 = state.replicas.find((r) => r.rank === 0)!;
      const result = settled[rank0.replica] as ReplicaResult;
      state.phase = 'completed';
      await Promise.all(runs);
      return result.trained!;
    }

    // The attempt is lost: stop every replica still running, wait until they have stopped.
    const error = settled.find((s, replica): s is Error => s instanceof Error && !calledOff.has(replica));
    lastError = error
      ? describe(error)
      : `only ${state.replicas.length} of ${wanted} trainers joined within ${rendezvousMs}; ` +
        'start more train workers (each runs GANTRY_TRAIN_SLOTS replicas)' +
        (spec.train.elastic ? ` — fewer than train.elastic.minReplicas (${minimum})` : '');
    state.attempts.push({ attempt, worldSize: state.worldSize, error: lastError });
    attemptOver = true;
    scopes.forEach((scope) => scope.cancel());
    await Promise.all(runs);
    if (error && !retryable(error)) {
      state.phase = 'failed';
      throw ApplicationFailure.create({
        message: lastError,
        type: failureType(error) ?? 'TrainJobFailed',
        nonRetryable: true,
        cause: error,
      });
    }
  }
  state.phase = 'failed';
  throw ApplicationFailure.create({
    message: `training job failed after ${spec.train.maxAttempts} attempts; last: ${lastError}`,
    type: 'TrainJobFailed',
    nonRetryable: true,
  });
}

function failureType(error: Error): string | undefined {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

const NON_RETRYABLE = new Set(['DatasetError', 'InvalidSpec', 'TrainingDiverged', 'ReplicasDiverged']);

function retryable(error: Error): boolean {
  if (isCancellation(error)) return true;
  const type = failureType(error);
  return !type || !NON_RETRYABLE.has(type);
}

function describe(error: Error): string {
  const cause = error instanceof ActivityFailure && error.cause ? error.cause : error;
  return cause.message || `${cause.name} (no message)`;
}
