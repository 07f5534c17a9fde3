/**
 * The files `gantry init` writes: a project that depends on this Gantry by path, with one tabular pipeline on the
 * CSV it also writes, its own architecture, and a test. Kept as text here so the generated project is readable.
 */

export interface TemplateInput {
  /** Project, pipeline and model name (an identifier). */
  name: string;
  /** `file:<folder of this Gantry>`, so the project installs offline. */
  gantryDependency: string;
  versions: { typescript: string; tsx: string; zod: string; typesNode: string };
}

export function packageJson(input: TemplateInput): string {
  const pkg = {
    name: input.name,
    version: '0.1.0',
    private: true,
    type: 'module',
    scripts: {
      dev: 'gantry dev',
      train: `gantry run ${input.name} --follow`,
      test: 'node --import tsx --test test/*.test.ts',
      typecheck: 'tsc --noEmit',
    },
    dependencies: { gantry: input.gantryDependency, zod: input.versions.zod },
    devDependencies: {
      '@types/node': input.versions.typesNode,
      tsx: input.versions.tsx,
      typescript: input.versions.typescript,
    },
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

export const TSCONFIG = `${JSON.stringify(
  {
    compilerOptions: {
      target: 'ES2022',
      module: 'ESNext',
      moduleResolution: 'Bundler',
      lib: ['ES2022'],
      types: ['node'],
      strict: true,
      skipLibCheck: true,
      isolatedModules: true,
      allowImportingTsExtensions: true,
      noEmit: true,
    },
    include: ['*.ts', 'pipelines', 'workflows', 'test'],
  },
  null,
  2,
)}\n`;

export function projectFile(input: TemplateInput): string {
  return `import { defineProject } from 'gantry';
import pipeline, { tabularMlp } from './pipelines/${input.name}.ts';

/**
 * The project file: Gantry's CLI and workers load it from this folder (or any folder below it), so the pipelines,
 * architectures, data sources and steps registered here run by name: \`npx gantry run ${input.name}\`.
 */
export default defineProject({
  name: '${input.name}',
  architectures: [tabularMlp],
  pipelines: [pipeline],
});
`;
}

export function pipelineFile(input: TemplateInput): string {
  return `import { defineArchitecture, definePipeline } from 'gantry';
import { z } from 'zod';

/** A small dense network for tabular data; its options are checked (and typed) by the zod schema. */
export const tabularMlp = defineArchitecture({
  name: 'tabular-mlp',
  description: 'dense(relu) × N with dropout → softmax (classification) or one linear unit (regression)',
  options: z.object({
    hiddenUnits: z.array(z.number().int().min(1).max(1024)).min(1).default([32, 16]),
    dropout: z.number().min(0).lt(1).default(0.1),
  }),
  build(tf, input, options) {
    const model = tf.sequential();
    options.hiddenUnits.forEach((units, i) => {
      model.add(
        tf.layers.dense({
          units,
          activation: 'relu',
          kernelInitializer: tf.initializers.heNormal({ seed: input.seed + i }),
          ...(i === 0 ? { inputShape: input.featureShape } : {}),
        }),
      );
      if (options.dropout > 0) model.add(tf.layers.dropout({ rate: options.dropout }));
    });
    const classify = input.task === 'classification';
    model.add(tf.layers.dense({ units: classify ? input.numClasses : 1, activation: classify ? 'softmax' : 'linear' }));
    return model;
  },
});

/**
 * Species of Palmer penguins from their measurements (data/penguins.csv: numeric and categorical columns, some
 * values missing). The schema is inferred on the first run and checked on every later one; the normalisation and
 * vocabularies travel with the model, so the served model takes raw rows.
 */
export default definePipeline({
  name: '${input.name}',
  description: 'penguin species from beak, flipper, body mass, island and sex',
  data: {
    source: 'csv',
    path: 'data/penguins.csv',
    label: 'Species',
    missing: 'impute',
    onMalformed: 'skip',
  },
  model: { name: '${input.name}', architecture: tabularMlp, options: { hiddenUnits: [32, 16], dropout: 0.1 } },
  train: { epochs: 60, batchSize: 32, learningRate: 0.01 },
  evaluation: { minAccuracy: 0.9, gates: [{ metric: 'logLoss', max: 0.5 }] },
  deployment: { publish: true, alias: 'champion' },
});
`;
}

export function testFile(input: TemplateInput): string {
  return `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadProject } from 'gantry';

test('the project loads and its pipeline validates', async () => {
  // loadProject checks the project file as the workers do: every definition registered, every pipeline validated.
  const project = await loadProject(fileURLToPath(new URL('../gantry.config.ts', import.meta.url)));
  assert.deepEqual(
    project.pipelines.map((pipeline) => pipeline.name),
    ['${input.name}'],
  );
  const [pipeline] = project.pipelines;
  assert.equal(pipeline?.model.architecture, 'tabular-mlp');
  assert.equal(pipeline?.data.label, 'Species');
});
`;
}

export function readme(input: TemplateInput): string {
  return `# ${input.name}

A [Gantry](${input.gantryDependency}) project: a pipeline that trains a penguin-species classifier on
\`data/penguins.csv\`, gates it, publishes it and serves it.

\`\`\`sh
npm install
npm test                                   # the project loads and its pipeline validates
npx gantry dev                             # Temporal, the workers and a model server (leave it running)
npx gantry run ${input.name} --follow      # in another terminal: ingest, train, evaluate, publish
\`\`\`

\`gantry dev\` prints the model server's REST address; predict with a raw row, as the CSV holds it:

\`\`\`sh
curl -s http://127.0.0.1:PORT/v1/models/${input.name}:predict -d '{"instances": [{"Island": "Biscoe",
  "Beak Length (mm)": 48.6, "Beak Depth (mm)": 16, "Flipper Length (mm)": 230, "Body Mass (g)": 5800, "Sex": "MALE"}]}'
\`\`\`

- \`gantry.config.ts\` registers the project's pipelines, architectures, data sources and steps.
- \`pipelines/${input.name}.ts\` is the pipeline and its architecture.
- State (the Temporal database, artifacts, the model repository) lives in \`.gantry/\` (GANTRY_HOME).
`;
}

/** The Palmer penguins rows as CSV, missing values as empty fields. */
export function penguinsCsv(rows: Record<string, unknown>[]): string {
  const columns = Object.keys(rows[0] ?? {});
  const field = (value: unknown) => {
    if (value === null || value === undefined) return '';
    const text = String(value);
    return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [columns.map(field).join(','), ...rows.map((row) => columns.map((c) => field(row[c])).join(','))];
  return `${lines.join('\n')}\n`;
}

export const GITIGNORE = 'node_modules/\n.gantry/\n';
