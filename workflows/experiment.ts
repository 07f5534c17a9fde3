import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { experimentStatusQuery, stopExperimentUpdate, type ExperimentInput, type ExperimentStatus } from './api';
import { deployActivities, workflowNow } from './deploy-activities';
import { durationMs } from '../pipelines/duration';
import { failureMessage } from './failure-message';
import { EMPTY_WINDOW } from './canary-analysis';
import { decideExperiment } from './experiment-analysis';
import { armsLayout } from './serving-desired';

/**
 * An A/B experiment (`gantry experiment start`): the arms — published versions with weights —
 * split the model's traffic for a fixed time, sticky per client key on the servers; the servers'
 * metrics give each arm's requests and online accuracy from feedback; at the end a two-proportion
 * test names a winner or "no significant difference", the verdict is recorded in the registry,
 * and the traffic goes back to the champion. It claims the model's traffic like a rollout, so the
 * two never overlap.
 */

export async function experimentWorkflow(input: ExperimentInput): Promise<ExperimentStatus> {
  const { model, arms } = input;
  const owner = workflowInfo().workflowId;
  const deploy = deployActivities();
  const status: ExperimentStatus = {
    model,
    arms,
    phase: 'running',
    startedAt: null,
    endsAt: null,
    windows: {},
    verdict: null,
    stoppedEarly: false,
  };
  const control = { stop: false };
  setHandler(experimentStatusQuery, () => status);
  setHandler(
    stopExperimentUpdate,
    async () => {
      control.stop = true;
      status.stoppedEarly = true;
      await condition(() => status.phase !== 'running');
      return status;
    },
    {
      validator: (_request: { reason?: string }) => {
        if (status.phase !== 'running') throw new Error(`the experiment on "${model}" already ended`);
      },
    },
  );

  await deploy.claimTraffic({ model, request: { owner, kind: 'experiment', version: null } });
  try {
    const description = arms.map((a) => `v${a.version}:${a.weight}`).join(' ');
    await deploy.setServing({
      model,
      request: {
        owner,
        layout: armsLayout(arms, input.championAlias, input.champion),
        note: `experiment ${description} for ${input.duration}`,
      },
    });
    const since = (await deploy.measureServing({ model, since: null })).snapshot;
    status.startedAt = workflowNow();
    const end = Date.now() + durationMs(input.duration);
    status.endsAt = new Date(end).toISOString();
    await deploy.recordEvent({
      model,
      request: {
        owner,
        kind: 'experiment',
        version: null,
        message: `experiment started: ${description} until ${status.endsAt}`,
      },
    });

    const measure = async () => {
      const measured = await deploy.measureServing({ model, since });
      status.windows = Object.fromEntries(
        arms.map((a) => [String(a.version), measured.versions[String(a.version)] ?? EMPTY_WINDOW]),
      );
    };
    while (!control.stop && Date.now() < end) {
      await condition(() => control.stop, Math.min(durationMs(input.analysisInterval), end - Date.now()));
      await measure();
    }
    const verdict = decideExperiment(
      arms.map((a) => ({
        version: a.version,
        labelled: status.windows[String(a.version)]!.feedback.labelled,
        correct: status.windows[String(a.version)]!.feedback.correct,
      })),
      { alpha: input.alpha, minFeedback: input.minFeedback },
    );
    status.verdict = verdict;
    await deploy.recordEvent({
      model,
      request: {
        owner,
        kind: 'experiment',
        version: verdict.winner,
        message: `experiment ${description}${status.stoppedEarly ? ' (stopped early)' : ''}: ${verdict.summary}`,
        details: { verdict, windows: status.windows },
      },
    });
    await deploy.releaseTraffic({
      model,
      owner,
      note: `experiment over (${verdict.winner ? `v${verdict.winner} won` : 'no winner'}); the champion serves again`,
    });
    status.phase = 'finished';
    return status;
  } catch (error) {
    await CancellationScope.nonCancellable(() =>
      deploy.releaseTraffic({ model, owner, note: 'experiment ended early; the champion serves again' }),
    );
    status.phase = 'cancelled';
    if (isCancellation(error)) throw error;
    throw ApplicationFailure.nonRetryable(
      `experiment on ${model} failed: ${failureMessage(error)}`,
      'ExperimentFailed',
    );
  }
}
