import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gantryHome } from '../../control/home';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { dataSourceNames, projectDataSource } from '../../data/sources';
import { loadPipeline, PipelineSpecError, validatePipeline, validateSubmission } from '../../pipelines';
import { findProjectFile, loadProject, ProjectError, type LoadedProject } from '../../pipelines/load-project';
import { stepNames } from '../../pipelines/registry';
import { architectureNames, getArchitecture } from '../../training/architectures';
import { bundleWorkflowCode } from '@temporalio/worker';
import { compileGantryTypeScript, WORKFLOWS_PATH } from '../../workers/pool-worker';
import { customPools, projectWorkflowsEntry } from '../../workers/project';
import { gantry } from '../helpers/cli';

/**
 * A user's project as `gantry init` lays it out, outside the repository: a gantry.config.ts registering an
 * architecture, a data source, a step (on a pool of its own) and a pipeline that uses all three by definition.
 */
const gantryIndex = pathToFileURL(path.join(PROJECT_ROOT, 'index.ts')).href;

const PROJECT_FILE = `
import { defineArchitecture, defineDataSource, definePipeline, defineProject, defineStep, z } from '${gantryIndex}';

export const tinyDense = defineArchitecture({
  name: 'tiny-dense',
  options: z.object({ units: z.number().int().min(1).default(8) }).strict(),
  build(tf, input, options) {
    const model = tf.sequential();
    model.add(tf.layers.dense({ units: options.units, activation: 'relu', inputShape: input.featureShape }));
    model.add(tf.layers.dense({ units: input.numClasses, activation: 'softmax' }));
    return model;
  },
});

export const myRows = defineDataSource({
  name: 'my-rows',
  async *stream() {
    yield { size: 1, colour: 'red', label: 'a' };
  },
});

export const qualityGate = defineStep({
  name: 'quality-gate',
  pool: 'quality',
  timeout: '2m',
  retries: 1,
  async run(context) {
    return context.outputs.dataset ? { data: { rows: context.outputs.dataset.counts.train } } : { stop: 'no data' };
  },
});

export default defineProject({
  name: 'shop',
  dataSources: [myRows],
  architectures: [tinyDense],
  steps: [qualityGate],
  pipelines: [
    definePipeline({
      name: 'shop-classifier',
      data: { source: myRows, label: 'label' },
      model: { name: 'shop', architecture: tinyDense, options: { units: 4 } },
      steps: [{ step: qualityGate, at: 'after-ingest' }],
    }),
  ],
});
`;

let root: string;
let projectFile: string;
let project: LoadedProject;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'gantry-project-'));
  projectFile = path.join(root, 'gantry.config.ts');
  await writeFile(projectFile, PROJECT_FILE);
  await mkdir(path.join(root, 'pipelines', 'deep'), { recursive: true });
  project = await loadProject(projectFile);
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('a project file', () => {
  it('registers its data sources, architectures, steps and pipelines', async () => {
    expect(project.definition.name).toBe('shop');
    expect(dataSourceNames()).toEqual(expect.arrayContaining(['fashion-mnist', 'my-rows']));
    expect(projectDataSource('my-rows')?.kind).toBe('tabular');
    expect(architectureNames()).toEqual(expect.arrayContaining(['mlp', 'cnn', 'tiny-dense']));
    expect(getArchitecture('tiny-dense').options.parse({})).toEqual({ units: 8 });
    expect(stepNames()).toEqual(['quality-gate']);
    // The spec is plain data naming the definitions; the placement carries the step's pool, timeout and retries.
    const spec = await loadPipeline('shop-classifier');
    expect(spec.data.source).toBe('my-rows');
    expect(spec.model).toEqual({ name: 'shop', architecture: 'tiny-dense', options: { units: 4 } });
    expect(spec.steps).toEqual([
      { name: 'quality-gate', at: 'after-ingest', pool: 'quality', timeout: '2m', retries: 1, options: {} },
    ]);
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
    // `gantry dev` starts a worker for the step's pool.
    expect(customPools(project)).toEqual(['quality']);
  });

  it('refuses unknown names before a run starts, listing the known ones', () => {
    let error: unknown;
    try {
      validateSubmission({
        name: 'broken',
        data: { source: 'my-rowz' },
        model: { name: 'broken', architecture: 'tiny-dence' },
        steps: [{ name: 'quality-gait', at: 'after-ingest' }],
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(PipelineSpecError);
    const issues = (error as PipelineSpecError).issues;
    expect(issues).toEqual([
      { path: 'data.source', message: expect.stringMatching(/unknown data source "my-rowz"; known: .*my-rows/) },
      {
        path: 'model.architecture',
        message: expect.stringMatching(/unknown model architecture "tiny-dence"; known: mlp, cnn, tabular, tiny-dense/),
      },
      { path: 'steps.0.name', message: 'unknown step "quality-gait"; known: quality-gate' },
    ]);
    // An architecture's own schema checks its options.
    expect(() =>
      validatePipeline({
        name: 'bad-options',
        data: { source: 'my-rows' },
        model: { name: 'm', architecture: 'tiny-dense', options: { units: 0 } },
      }),
    ).toThrow(/model\.options\.units/);
  });

  it('refuses a project whose pipeline names something it does not register', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-project-bad-'));
    try {
      const file = path.join(dir, 'gantry.config.ts');
      await writeFile(
        file,
        `import { defineProject } from '${gantryIndex}';\n` +
          'export default defineProject({ name: "bad", pipelines: [{ name: "p", data: { source: "fashion-mnist" }, ' +
          'model: { name: "p", architecture: "mlp" }, steps: [{ name: "nowhere", at: "after-train" }] }] });\n',
      );
      const loading = loadProject(file);
      await expect(loading).rejects.toBeInstanceOf(ProjectError);
      await expect(loading).rejects.toThrow(
        /pipeline "p": .*steps\.0\.name: unknown step "nowhere"; known: quality-gate/s,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is found from the working directory upward, and its .gantry/ is the default GANTRY_HOME', async () => {
    const deep = path.join(root, 'pipelines', 'deep');
    expect(findProjectFile({ cwd: deep, env: {} })).toBe(projectFile);
    expect(findProjectFile({ cwd: os.tmpdir(), env: {} })).toBeNull();
    expect(findProjectFile({ cwd: '/', env: { GANTRY_PROJECT: root } })).toBe(projectFile);
    expect(() => findProjectFile({ cwd: '/', explicit: path.join(root, 'nope.ts'), env: {} })).toThrow(
      /nope\.ts: project file not found/,
    );
    expect(gantryHome({ GANTRY_PROJECT: projectFile }, '/somewhere/else').root).toBe(path.join(root, '.gantry'));
    expect(gantryHome({ GANTRY_PROJECT: projectFile, GANTRY_HOME: '/srv/state' }, '/').root).toBe('/srv/state');
    expect(gantryHome({}, '/work').root).toBe('/work/.gantry');
  });

  it("bundles the project's own workflows with Gantry's for the control worker", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-project-workflows-'));
    try {
      await writeFile(
        path.join(dir, 'gantry.config.ts'),
        `import { defineProject } from '${gantryIndex}';\n` +
          'export default defineProject({ name: "flows", workflows: "./flows" });\n',
      );
      await writeFile(
        path.join(dir, 'flows.ts'),
        'export async function approvalFlow(): Promise<string> {\n  return "ok";\n}\n',
      );
      const flows = await loadProject(path.join(dir, 'gantry.config.ts'));
      expect(flows.workflowsPath).toBe(path.join(dir, 'flows.ts'));
      const entry = await projectWorkflowsEntry(
        WORKFLOWS_PATH,
        flows,
        gantryHome({ GANTRY_HOME: path.join(dir, '.gantry') }),
      );
      const { code } = await bundleWorkflowCode({
        workflowsPath: entry,
        webpackConfigHook: compileGantryTypeScript,
        logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
      });
      // Both modules' workflows are in the one bundle.
      expect(code).toContain('approvalFlow');
      expect(code).toContain('retrainWorkflow');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is loaded by the CLI: project pipelines run by name, unknown ones are refused with the known names', async () => {
    const env = { ...process.env, GANTRY_PROJECT: '', GANTRY_HOME: '' };
    const unknown = await gantry(['run', 'shop-classifer'], env, 60_000, path.join(root, 'pipelines', 'deep'));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(
      /unknown pipeline "shop-classifer": not one of the project's \(shop-classifier\), a built-in \(fashion-mnist\)/,
    );
    const elsewhere = await gantry(['--project', projectFile, 'worker', '--pool', 'gpu'], env, 60_000, os.tmpdir());
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toMatch(/--pool: "gpu" is not a pool; choose control, train, quality/);
  });
});
