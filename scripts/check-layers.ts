/**
 * The layout's rules, checked on every `make test` (DESIGN.md, "Layout"): arrows between top-level folders run one
 * way only — no import cycle between two folders, type-only imports included — and a few arrows never exist at all
 * (serving → training, training or serving → workflows, workflows → activities, collectives → anything of
 * TensorFlow or Temporal). dependency-cruiser reads the imports; this script folds them into a graph of folders.
 *
 *   npx tsx scripts/check-layers.ts          # prints the folder graph's arrows and every breach; exit 1 on a breach
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type IModule } from 'dependency-cruiser';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The product's folders. test/ and bench/ import everything and are imported by nothing, so they cannot close a
 * cycle.
 */
const FOLDERS = [
  'activities',
  'artifacts',
  'cli',
  'collectives',
  'control',
  'data',
  'engine',
  'pipelines',
  'serving',
  'training',
  'ui',
  'validation',
  'workers',
  'workflows',
];

/** Arrows that must not exist, whatever else the graph looks like, with the reason a reader gets. */
const FORBIDDEN: { from: string; to: RegExp; why: string }[] = [
  {
    from: 'serving',
    to: /^training\//,
    why: 'the model server shares the engine with training, never training itself',
  },
  { from: 'serving', to: /^workflows\//, why: 'the model server knows nothing of Temporal' },
  { from: 'training', to: /^workflows\//, why: 'training is a library the activities drive' },
  { from: 'workflows', to: /^activities\//, why: 'workflows see activities through the contract in workflows/api.ts' },
  { from: 'cli', to: /^activities\//, why: 'the CLI is a client: workflows/api.ts and control/ are its way in' },
  { from: 'engine', to: /^(training|serving|workflows|activities)\//, why: 'the engine sits below its users' },
  {
    from: 'ui',
    to: /^(training|serving|activities|workers|engine)\//,
    why: "the dashboard is a client: it reads Gantry's state through control/ and workflows/api.ts",
  },
  ...['control', 'workflows', 'serving', 'training', 'activities', 'workers', 'engine', 'data', 'pipelines'].map(
    (from) => ({ from, to: /^ui\//, why: 'nothing below the CLI starts or reads the dashboard' }),
  ),
  {
    from: 'collectives',
    to: /^(@tensorflow|@temporalio|engine\/|training\/|workflows\/|activities\/)/,
    why: 'collectives are plain networking: no TensorFlow, no Temporal',
  },
];

const folderOf = (file: string): string | undefined => {
  const top = file.split('/')[0]!;
  return FOLDERS.includes(top) && file.includes('/') ? top : undefined;
};

/** Each folder-to-folder arrow with one import that makes it, for the message. */
type Arrows = Map<string, Map<string, string>>;

function folderArrows(modules: IModule[]): Arrows {
  const arrows: Arrows = new Map();
  for (const module of modules) {
    const from = folderOf(module.source);
    if (!from) continue;
    for (const dependency of module.dependencies) {
      const to = folderOf(dependency.resolved);
      if (!to || to === from) continue;
      const targets = arrows.get(from) ?? new Map<string, string>();
      if (!targets.has(to)) targets.set(to, `${module.source} → ${dependency.resolved}`);
      arrows.set(from, targets);
    }
  }
  return arrows;
}

/** Every cycle of folders, as the strongly connected components (Tarjan) with more than one folder. */
function folderCycles(arrows: Arrows): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next++);
    stack.push(node);
    onStack.add(node);
    for (const target of arrows.get(node)?.keys() ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1) components.push(component.sort());
  };
  for (const folder of FOLDERS) if (!index.has(folder)) visit(folder);
  return components;
}

function forbiddenImports(modules: IModule[]): string[] {
  const breaches: string[] = [];
  for (const module of modules) {
    const from = folderOf(module.source);
    for (const rule of FORBIDDEN.filter((r) => r.from === from)) {
      for (const dependency of module.dependencies) {
        const target = dependency.coreModule || dependency.couldNotResolve ? dependency.module : dependency.resolved;
        const name = target.startsWith('node_modules/') ? target.replace(/^node_modules\//, '') : target;
        if (rule.to.test(name) || rule.to.test(dependency.module)) {
          breaches.push(`${module.source} imports ${dependency.module}: ${rule.why}`);
        }
      }
    }
  }
  return breaches;
}

async function main(): Promise<void> {
  process.chdir(ROOT);
  const present = FOLDERS.filter((folder) => existsSync(folder));
  const result = await cruise(
    present,
    // tsPreCompilationDeps: type-only imports count — a cycle of types is still a cycle of concepts.
    { tsPreCompilationDeps: true, doNotFollow: { path: 'node_modules' }, exclude: { path: '\\.test\\.ts$' } },
    undefined,
    { tsConfig: undefined },
  );
  if (typeof result.output === 'string') throw new Error('dependency-cruiser returned text, not a result');
  const modules = result.output.modules;
  const arrows = folderArrows(modules);
  const cycles = folderCycles(arrows);
  const breaches = forbiddenImports(modules);

  console.log(`layers: ${modules.filter((m) => folderOf(m.source)).length} modules in ${present.length} folders`);
  for (const [from, targets] of [...arrows].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(`  ${from.padEnd(12)} → ${[...targets.keys()].sort().join(', ')}`);
  }
  for (const cycle of cycles) {
    console.error(`cycle between folders: ${cycle.join(' ⇄ ')}`);
    for (const from of cycle) {
      for (const [to, example] of arrows.get(from) ?? []) if (cycle.includes(to)) console.error(`    ${example}`);
    }
  }
  for (const breach of breaches) console.error(`forbidden: ${breach}`);
  if (cycles.length > 0 || breaches.length > 0) process.exit(1);
  console.log('layers: no cycle between folders, no forbidden arrow');
}

await main();
