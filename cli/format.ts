import type { RunResult, StepRecord, StoppedRunResult } from '../workflows/api';

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

/** What became of the published version: its canary's outcome, or that the alias moved at once. */
function rolloutLine(result: RunResult): string[] {
  if (result.rollout) {
    const { result: outcome, reasons, decisions } = result.rollout;
    const verdict =
      outcome === 'promoted'
        ? `v${result.version} promoted`
        : `v${result.version} ROLLED BACK${result.champion ? ` (v${result.champion.version} keeps the traffic)` : ''}`;
    return [`rollout    ${verdict}: ${reasons.join('; ')} (${decisions} decision${decisions === 1 ? '' : 's'})`];
  }
  // Results from before rollouts existed have neither field.
  if (result.promoted === undefined || !result.published) return [];
  return [`rollout    none in the spec: v${result.version} took the alias when published`];
}

/** ", multi-worker-mirrored × 2 replicas, all-reduce over shared memory" — or nothing for a plain single trainer. */
function distributionText(distribution: RunResult['train']['distribution'] | undefined): string {
  if (!distribution || (distribution.replicas <= 1 && distribution.strategy === 'mirrored')) return '';
  const transport =
    distribution.allReduce === 'shared-memory' ? 'shared memory' : distribution.allReduce === 'tcp' ? 'TCP' : undefined;
  return (
    `, ${distribution.strategy} × ${distribution.replicas} replicas` +
    `${transport ? `, all-reduce over ${transport}` : ''}`
  );
}

/** The human summary of a finished run. */
export function formatRunResult(result: RunResult, wallSeconds?: number): string {
  const lines = [
    `run        ${result.runId}`,
    `model      ${result.model} v${result.version} — ${result.blessed ? 'blessed' : 'NOT blessed'}, ` +
      `${result.published ? `published to ${result.publishedPath}` : 'not published'}`,
    `accuracy   ${pct(result.testAccuracy)} on ${result.dataset.counts.test} test images (loss ` +
      `${result.testLoss.toFixed(4)})` +
      (result.champion
        ? `; champion v${result.champion.version}: ${pct(result.champion.testAccuracy)}`
        : '; no champion before'),
    `training   ${result.train.epochs} epochs in ${result.train.seconds.toFixed(1)} s, ` +
      `${Math.round(result.train.samplesPerSecond)} samples/s on ${result.backend} ` +
      `(tfjs ${result.backends.train.tfjsVersion}, ` +
      (result.train.execution.mode === 'graph'
        ? 'one TensorFlow graph per step'
        : `eager: ${result.train.execution.reason}`) +
      distributionText(result.train.distribution) +
      ')' +
      (result.train.resumedFromEpoch !== null
        ? `, attempt ${result.train.attempt} resumed after epoch ${result.train.resumedFromEpoch}`
        : ''),
    `data       ${result.dataset.counts.train} train / ${result.dataset.counts.validation} validation / ` +
      `${result.dataset.counts.test} test, fingerprint ${result.dataset.fingerprint.slice(0, 12)}, ` +
      (result.dataset.drift.drifted ? `DRIFT: ${result.dataset.drift.reasons.join('; ')}` : 'no drift'),
    ...rolloutLine(result),
    ...stepLines(result.steps ?? []),
    'reasons',
    ...result.reasons.map((r) => `  - ${r}`),
  ];
  if (wallSeconds !== undefined) lines.push(`took       ${wallSeconds.toFixed(1)} s end to end`);
  return lines.join('\n');
}

/** One line per user step that ran, with what it returned (shortened). */
function stepLines(steps: StepRecord[]): string[] {
  return steps.map((s) => {
    const data = JSON.stringify(s.data);
    return `step       ${s.name} (${s.at}): ${data.length > 100 ? `${data.slice(0, 97)}...` : data}`;
  });
}

/** The human summary of a run that a user step stopped. */
export function formatStoppedRun(result: StoppedRunResult, wallSeconds?: number): string {
  const { step, at, reason } = result.stopped;
  const lines = [
    `run        ${result.runId}`,
    `STOPPED    by step ${step} (${at}): ${reason}`,
    `model      ${result.model}${result.version !== null ? ` v${result.version}` : ''} — ` +
      `${result.published ? `published to ${result.publishedPath}` : 'not published'}`,
    `data       ${result.dataset.counts.train} train / ${result.dataset.counts.validation} validation / ` +
      `${result.dataset.counts.test} test, fingerprint ${result.dataset.fingerprint.slice(0, 12)}`,
    ...stepLines(result.steps),
  ];
  if (wallSeconds !== undefined) lines.push(`took       ${wallSeconds.toFixed(1)} s end to end`);
  return lines.join('\n');
}
