import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  approveRolloutUpdate,
  promoteRolloutUpdate,
  rollbackRolloutUpdate,
  rolloutStatusQuery,
  type ManualRequest,
  type RolloutDecision,
  type RolloutInput,
  type RolloutStatus,
  type ServingMeasurement,
} from './api';
import { deployActivities, workflowNow } from './deploy-activities';
import { durationMs } from '../pipelines/duration';
import { failureMessage } from './failure-message';
import { EMPTY_WINDOW, judgeCanary, judgeShadow, type Judgement, type VersionWindow } from './canary-analysis';
import { canaryLayout, shadowLayout, type ServingLayout } from './serving-desired';

/**
 * The canary rollout of one candidate version (DESIGN: retrain step 5). A child of the retrain
 * workflow, or started alone (`gantry rollout start`). It claims the model's traffic in the
 * registry (so two rollouts or experiments never steer one model at once), then: an optional
 * shadow phase, the traffic steps, each held for its bake while the servers' metrics are judged
 * every analysis interval; a breach rolls back at once, too little traffic extends the bake, all
 * steps passed promote — after a manual approval when the spec asks for one. Each decision is
 * recorded in the registry and, with the measurements it was made on, in this history.
 * Manual approve / promote / rollback arrive as Updates and take effect at once.
 */

export async function rolloutWorkflow(input: RolloutInput): Promise<RolloutStatus> {
  const { model, candidate, champion, spec } = input;
  const owner = workflowInfo().workflowId;
  const deploy = deployActivities();

  const status: RolloutStatus = {
    model,
    candidate,
    champion,
    phase: 'starting',
    step: null,
    steps: spec.steps.length,
    percent: 0,
    extensions: 0,
    latest: null,
    decisions: [],
    analyses: [],
    outcome: null,
    thresholds: spec.thresholds,
    plan: spec.steps.map((s) => ({ percent: s.percent, bake: s.bake })),
  };
  // In an object, not `let`s: handlers set them while the main body awaits.
  const requests: { manual: { action: 'promote' | 'rollback'; reason: string } | null; approved: boolean } = {
    manual: null,
    approved: false,
  };
  const finished = () => status.outcome !== null;

  setHandler(rolloutStatusQuery, () => status);
  setHandler(
    approveRolloutUpdate,
    async ({ reason }) => {
      requests.approved = true;
      decide({ phase: 'approval', action: 'approved', message: `approved${reason ? `: ${reason}` : ''}` });
      if (status.phase === 'awaiting-approval') await condition(finished);
      return status;
    },
    {
      validator: (_request: ManualRequest) => {
        if (finished()) throw new Error(`the rollout of v${candidate} already ended: ${status.outcome!.result}`);
      },
    },
  );
  setHandler(
    promoteRolloutUpdate,
    async ({ reason }) => {
      requests.manual = { action: 'promote', reason: `promoted by hand${reason ? `: ${reason}` : ''}` };
      await condition(finished);
      return status;
    },
    {
      validator: (_request: ManualRequest) => {
        if (finished()) throw new Error(`the rollout of v${candidate} already ended: ${status.outcome!.result}`);
      },
    },
  );
  setHandler(
    rollbackRolloutUpdate,
    async ({ reason }) => {
      requests.manual = { action: 'rollback', reason: `rolled back by hand${reason ? `: ${reason}` : ''}` };
      await condition(finished);
      return status;
    },
    {
      validator: (_request: ManualRequest) => {
        if (finished()) throw new Error(`the rollout of v${candidate} already ended: ${status.outcome!.result}`);
      },
    },
  );

  function decide(
    d: Omit<RolloutDecision, 'at' | 'step' | 'percent'> & { step?: number | null; percent?: number },
  ): RolloutDecision {
    const decision: RolloutDecision = { at: workflowNow(), step: status.step, percent: status.percent, ...d };
    status.latest = decision;
    if (d.action !== 'analyse') status.decisions.push(decision);
    else if (status.analyses.push(decision) > 200) status.analyses.shift();
    return decision;
  }
  /** Decisions that change the model's traffic also go to the registry. */
  async function decideAndRecord(d: Parameters<typeof decide>[0]): Promise<void> {
    const decision = decide(d);
    await deploy.recordEvent({
      model,
      request: {
        owner,
        kind: 'rollout',
        version: candidate,
        message:
          `rollout v${candidate}: ${decision.phase}${decision.step ? ` step ${decision.step}` : ''} ` +
          `${decision.action} — ${decision.message}`,
        details: decision,
      },
    });
  }
  async function serve(layout: ServingLayout, note: string): Promise<void> {
    await deploy.setServing({ model, request: { owner, layout, note } });
  }
  async function conclude(result: 'promoted' | 'rolled-back', reasons: string[]): Promise<RolloutStatus> {
    decide({ phase: 'final', action: result === 'promoted' ? 'promote' : 'rollback', message: reasons.join('; ') });
    await deploy.conclude({
      model,
      request: { owner, candidate, outcome: result, reasons, details: { decisions: status.decisions } },
    });
    status.phase = result;
    status.outcome = { result, reasons, at: workflowNow() };
    return status;
  }

  await deploy.claimTraffic({ model, request: { owner, kind: 'rollout', version: candidate } });
  try {
    if (champion === null || champion === candidate) {
      return await conclude('promoted', [
        champion === null
          ? 'no champion to compare against: the first version is promoted at once'
          : `v${candidate} is already the champion`,
      ]);
    }
    if ((await deploy.servingServers()).length === 0) {
      return await conclude('promoted', [
        'no model servers are configured (GANTRY_SERVERS or GANTRY_HOME/servers.json): promoted without a canary',
      ]);
    }

    const championKey = String(champion);
    const candidateKey = String(candidate);
    /** The champion's last window with enough traffic: the reference once the canary has it all. */
    let championReference: VersionWindow | null = null;

    /**
     * Holds the current phase for its bake, judging every analysis interval. Returns 'pass', or
     * the reasons to roll back; a manual action ends it early.
     */
    async function bake(phase: 'shadow' | 'canary', bakeFor: string): Promise<'pass' | string[] | 'manual'> {
      let since: unknown = (await deploy.measureServing({ model, since: null })).snapshot;
      let extensions = 0;
      let remaining = durationMs(bakeFor);
      for (;;) {
        const interval = Math.min(durationMs(spec.analysisInterval), remaining);
        const started = Date.now();
        await condition(() => requests.manual !== null, interval);
        if (requests.manual) return 'manual';
        remaining -= Date.now() - started;
        const measured: ServingMeasurement = await deploy.measureServing({ model, since });
        let judgement: Judgement;
        let canaryWindow: VersionWindow | undefined;
        let championWindow: VersionWindow | null = null;
        if (phase === 'shadow') {
          judgement = judgeShadow(
            measured.shadow[candidateKey] ?? { agree: 0, disagree: 0, error: 0 },
            spec.thresholds,
            spec.minRequests,
          );
        } else {
          canaryWindow = measured.versions[candidateKey] ?? EMPTY_WINDOW;
          const championNow = measured.versions[championKey] ?? EMPTY_WINDOW;
          if (championNow.requests >= spec.minRequests) championReference = championNow;
          championWindow = championNow.requests >= spec.minRequests ? championNow : championReference;
          judgement = judgeCanary(canaryWindow, championWindow, spec.thresholds, spec.minRequests);
        }
        const unreachable = measured.servers.filter((s) => !s.ok).map((s) => `${s.url}: ${s.error}`);
        decide({
          phase,
          action: 'analyse',
          message: [
            ...judgement.breaches,
            ...judgement.passed,
            ...judgement.pending,
            ...unreachable.map((u) => `unreachable ${u}`),
          ].join('; '),
          judgement,
          canary: canaryWindow,
          champion: championWindow,
        });
        if (judgement.breaches.length) {
          await decideAndRecord({
            phase,
            action: 'breach',
            message: judgement.breaches.join('; '),
            judgement,
            canary: canaryWindow,
            champion: championWindow,
          });
          return judgement.breaches;
        }
        if (remaining > 0) continue;
        if (judgement.enough) {
          await decideAndRecord({
            phase,
            action: 'pass',
            message: judgement.passed.join('; ') || 'no threshold broken',
            judgement,
            canary: canaryWindow,
            champion: championWindow,
          });
          return 'pass';
        }
        if (extensions >= spec.maxExtensions) {
          const reason =
            `too little traffic to judge${status.step ? ` step ${status.step}` : ' the shadow phase'} ` +
            `after ${extensions} extension(s): ${judgement.pending.join('; ')}`;
          await decideAndRecord({
            phase,
            action: 'breach',
            message: reason,
            judgement,
            canary: canaryWindow,
            champion: championWindow,
          });
          return [reason];
        }
        extensions++;
        status.extensions++;
        remaining = durationMs(bakeFor);
        // The window keeps growing from the phase's start: the extension adds traffic to judge.
        await decideAndRecord({
          phase,
          action: 'extend',
          message: `bake extended (${extensions}/${spec.maxExtensions}): ${judgement.pending.join('; ')}`,
        });
      }
    }

    const finishManually = () =>
      conclude(requests.manual!.action === 'promote' ? 'promoted' : 'rolled-back', [requests.manual!.reason]);

    if (spec.shadow) {
      status.phase = 'shadow';
      await serve(
        shadowLayout(champion, candidate, spec.shadow.percent, input.championAlias),
        `rollout v${candidate}: shadow ${spec.shadow.percent} %`,
      );
      await decideAndRecord({
        phase: 'shadow',
        action: 'start',
        message: `a copy of ${spec.shadow.percent} % of the traffic goes to v${candidate}; v${champion} answers`,
      });
      const result = await bake('shadow', spec.shadow.bake);
      if (result === 'manual') return await finishManually();
      if (result !== 'pass') return await conclude('rolled-back', result);
    }

    for (const [index, step] of spec.steps.entries()) {
      status.phase = 'canary';
      status.step = index + 1;
      status.percent = step.percent;
      await serve(
        canaryLayout(champion, candidate, step.percent, input.championAlias),
        `rollout v${candidate}: step ${index + 1}/${spec.steps.length}, ${step.percent} %`,
      );
      await decideAndRecord({
        phase: 'canary',
        action: 'start',
        message: `v${candidate} takes ${step.percent} % of the traffic for ${step.bake}`,
      });
      const result = await bake('canary', step.bake);
      if (result === 'manual') return await finishManually();
      if (result !== 'pass') return await conclude('rolled-back', result);
    }

    if (spec.approval) {
      status.phase = 'awaiting-approval';
      await decideAndRecord({
        phase: 'approval',
        action: 'start',
        message: `every step passed; waiting up to ${spec.approval.timeout} for \`gantry approve ${model}\``,
      });
      const answered = await condition(() => requests.approved || requests.manual !== null, spec.approval.timeout);
      if (requests.manual) return await finishManually();
      if (!answered) {
        await decideAndRecord({
          phase: 'approval',
          action: 'timeout',
          message: `no approval within ${spec.approval.timeout}: ${spec.approval.onTimeout}`,
        });
        if (spec.approval.onTimeout === 'rollback')
          return await conclude('rolled-back', [`not approved within ${spec.approval.timeout}`]);
      }
    }
    return await conclude('promoted', [
      `all ${spec.steps.length} steps passed${spec.shadow ? ' after the shadow phase' : ''}` +
        `${requests.approved ? ', approved' : ''}`,
    ]);
  } catch (error) {
    // Cancelled or failed midway: the champion keeps the traffic and the candidate is rolled back.
    if (!finished()) {
      const reason = isCancellation(error) ? 'rollout cancelled' : `rollout failed: ${failureMessage(error)}`;
      await CancellationScope.nonCancellable(() => conclude('rolled-back', [reason]));
    }
    if (isCancellation(error)) throw error;
    throw ApplicationFailure.nonRetryable(
      `rollout of ${model} v${candidate} failed: ${failureMessage(error)}`,
      'RolloutFailed',
    );
  }
}
