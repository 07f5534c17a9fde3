import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { withClient } from '../../control/connect';
import { deploymentPrefix, taskQueueOf } from '../../control/task-queues';
import { DEFAULT_SIGNATURE, readServeSignature, SAVED_MODEL_FILE, SavedModelError } from '../../engine/saved-model';
import { importWorkflowId, type ImportResult } from '../../workflows/api';
import { importModelWorkflow } from '../../workflows/import-model';
import { CommandFailed, UsageError } from '../errors';
import { rootCause } from './run';

export interface ModelsImportOptions {
  signature: string;
  dataset?: string;
  json?: boolean;
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * The checks a user hears about at once, before a workflow starts (the import's first activity repeats them on
 * the worker, which is what counts): the folder exists and holds a readable SavedModel with the signature, or a
 * tfjs model.json.
 */
async function precheck(dir: string, signature: string): Promise<void> {
  const info = await stat(dir).catch(() => null);
  if (!info) throw new UsageError(`${dir} does not exist`);
  if (!info.isDirectory()) throw new UsageError(`${dir} is not a folder (a SavedModel or a tfjs model.json folder)`);
  if (await stat(path.join(dir, SAVED_MODEL_FILE)).catch(() => null)) {
    try {
      await readServeSignature(dir, signature);
    } catch (error) {
      if (error instanceof SavedModelError) throw new UsageError(error.message);
      throw error;
    }
    return;
  }
  if (await stat(path.join(dir, 'model.json')).catch(() => null)) {
    if (signature !== DEFAULT_SIGNATURE)
      throw new UsageError(`${dir} is a tfjs model, which has one signature: ${DEFAULT_SIGNATURE}, not "${signature}"`);
    return;
  }
  throw new UsageError(`${dir} holds neither saved_model.pb (a SavedModel) nor model.json (a tfjs layers model)`);
}

function formatImport(result: ImportResult, source: string): string {
  const lines = [
    `imported ${source} (${result.format}, signature ${result.signature}) as v${result.version} of ${result.model}`,
  ];
  const m = result.metrics;
  if (m) {
    const measured =
      m.task === 'regression'
        ? `rmse ${m.values?.rmse?.toFixed(4) ?? '?'}`
        : `accuracy ${(m.testAccuracy * 100).toFixed(2)}%, loss ${m.testLoss.toFixed(4)}`;
    lines.push(`  evaluated on the test split of dataset ${result.datasetFingerprint?.slice(0, 12)}: ${measured}`);
  } else lines.push(`  not evaluated: ${result.reason}`);
  lines.push(
    `  ${result.blessed ? 'blessed' : 'not blessed'}; ` +
      (result.published
        ? `published to ${result.publishedPath} (no alias moved: gantry rollout start ${result.model} ` +
          `${result.version}, or gantry promote)`
        : 'not published'),
  );
  for (const reason of result.reasons) lines.push(`    ${reason}`);
  return lines.join('\n');
}

/** `gantry models import <model> <path>`: runs the import workflow on the control pool and waits for the version. */
export async function modelsImportCommand(model: string, folder: string, options: ModelsImportOptions): Promise<void> {
  if (!MODEL_NAME.test(model)) throw new UsageError(`model name ${JSON.stringify(model)} is not a safe folder name`);
  const dir = path.resolve(folder);
  await precheck(dir, options.signature);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  const workflowId = importWorkflowId(deploymentPrefix(), model, `${stamp}-${randomBytes(3).toString('hex')}`);
  await withClient(async (client) => {
    const handle = await client.workflow.start(importModelWorkflow, {
      workflowId,
      taskQueue: taskQueueOf('control'),
      args: [
        {
          model,
          path: dir,
          signature: options.signature,
          ...(options.dataset === undefined ? {} : { dataset: options.dataset }),
        },
      ],
    });
    if (!options.json) console.error(`importing ${dir} into ${model} (${handle.workflowId})`);
    let result: ImportResult;
    try {
      result = await handle.result();
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const message = rootCause(error);
      if (options.json) console.log(JSON.stringify({ importId: workflowId, status: 'failed', error: message }));
      throw new CommandFailed(`import ${workflowId} failed: ${message}`);
    }
    console.log(options.json ? JSON.stringify(result) : formatImport(result, dir));
  });
}
