import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { installQuietRuntime } from '../helpers/quiet-runtime';
import { historyFromFile, listRecordings, type Recording } from './histories';

/**
 * Every history scripts/record-histories.ts recorded, from every release under test/replay/histories/, replayed
 * against the workflow bundle production workers run (the global setup's bundle of workflows/index.ts). A change
 * to workflow code that a running registry, rollout or experiment of an earlier release could not survive fails
 * here, naming the workflow type, the case and the nondeterminism. No server: replay runs in this process.
 */

const recordings = await listRecordings();

/** Replays `recordings` against `bundle`; the failures, one line each. */
async function replay(bundle: WorkflowBundleOption, of: Recording[]): Promise<string[]> {
  const byId = new Map(of.map((r) => [r.workflowId, r]));
  async function* histories() {
    for (const r of of) yield { workflowId: r.workflowId, history: await historyFromFile(r.file) };
  }
  const failures: string[] = [];
  let replayed = 0;
  for await (const result of Worker.runReplayHistories(
    { workflowBundle: bundle, replayName: 'replay-test' },
    histories(),
  )) {
    replayed++;
    const r = byId.get(result.workflowId)!;
    if (result.error)
      failures.push(
        `${r.workflowType} "${r.case}" (release ${r.release}): ${result.error.name}: ${result.error.message}`,
      );
  }
  if (replayed !== of.length) failures.push(`only ${replayed} of ${of.length} histories were replayed`);
  return failures;
}

beforeAll(() => installQuietRuntime());

describe('recorded workflow histories replay against the current workflow code', () => {
  it('has recordings of every workflow type, open long-running ones included', () => {
    const types = new Set(recordings.map((r) => r.workflowType));
    for (const type of ['registryWorkflow', 'rolloutWorkflow', 'experimentWorkflow']) {
      expect(types).toContain(type);
      expect(recordings.some((r) => r.workflowType === type && r.open)).toBe(true);
    }
    for (const type of ['retrainWorkflow', 'trainJobWorkflow', 'importModelWorkflow']) expect(types).toContain(type);
  });

  const releases = [...new Set(recordings.map((r) => r.release))];
  it.each(releases)('release %s: every history replays', async (release) => {
    const failures = await replay(
      { codePath: inject('workflowBundlePath') },
      recordings.filter((r) => r.release === release),
    );
    expect(failures, failures.join('\n')).toEqual([]);
  });
});

/**
 * The mechanism protects: a copy of a workflow changed the way a careless release would (an activity call inserted)
 * fails the replay of its recordings with a nondeterminism error, and the same change behind `patched()` replays.
 * Shown on the import (a short workflow) and on the registry (the entity workflow a `.gantry/` home keeps open).
 */
describe('a changed workflow', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-replay-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** workflows/<file> with `insert` before the line `anchor`, bundled from a folder of its own. */
  async function changedWorkflow(file: string, anchor: string, insert: string): Promise<WorkflowBundleOption> {
    const workflows = path.join(PROJECT_ROOT, 'workflows');
    const source = await readFile(path.join(workflows, file), 'utf8');
    expect(source).toContain(anchor);
    const changed =
      "import { patched } from '@temporalio/workflow';\n" +
      source
        .replace(/from '\.\/([\w-]+)'/g, (_, name: string) => `from '${path.join(workflows, `${name}.ts`)}'`)
        .replace(anchor, `${insert}\n${anchor}`);
    const copy = path.join(dir, `${Math.random().toString(36).slice(2)}-${file}`);
    await writeFile(copy, changed);
    const { code } = await bundleWorkflowCode({
      workflowsPath: copy,
      // The copy lives outside the repository: its imports resolve from the repository's node_modules.
      webpackConfigHook: (config) => {
        config.resolve = { ...config.resolve, modules: [path.join(PROJECT_ROOT, 'node_modules'), 'node_modules'] };
        return config;
      },
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) },
    });
    return { code };
  }

  const changes = [
    {
      workflowType: 'importModelWorkflow',
      file: 'import-model.ts',
      anchor: '  const { artifactUri } = await activities.stageImport(',
      call: 'await activities.inspectImport({ path: input.path, signature: input.signature });',
      indent: '  ',
    },
    {
      workflowType: 'registryWorkflow',
      file: 'registry.ts',
      anchor: '    await condition(mustContinue, reconcileInterval);',
      call: 'await deploy.servingServers();',
      indent: '    ',
    },
  ];

  it.each(changes)('$workflowType: an activity call inserted without a patch breaks the replay', async (change) => {
    const of = recordings.filter((r) => r.workflowType === change.workflowType);
    expect(of.length).toBeGreaterThan(0);
    const failures = await replay(await changedWorkflow(change.file, change.anchor, change.indent + change.call), of);
    expect(failures).toHaveLength(of.length);
    for (const failure of failures)
      expect(failure).toMatch(new RegExp(`^${change.workflowType} ".+" \\(release .+\\): DeterminismViolationError`));
    expect(failures.join('\n')).toMatch(/nondeterminism/i);
  });

  it.each(changes)("$workflowType: the same change behind patched('…') replays", async (change) => {
    const of = recordings.filter((r) => r.workflowType === change.workflowType);
    const insert = `${change.indent}if (patched('extra-call')) ${change.call}`;
    const failures = await replay(await changedWorkflow(change.file, change.anchor, insert), of);
    expect(failures, failures.join('\n')).toEqual([]);
  });
});
