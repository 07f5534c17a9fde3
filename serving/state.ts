import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  DEFAULT_VERSION_POLICY,
  LabelSchema,
  MODEL_NAME_PATTERN,
  ModelConfigSchema,
  ModelNameSchema,
  VersionNumberSchema,
  type ModelConfig,
  type ModelServerConfig,
} from './config';
import { writeFileAtomically } from '../artifacts/store';
import { describeIssues } from '../validation/issues';
import { lockStateFile } from './state-lock';

/**
 * What the server is told to serve, beyond what it finds: the models configured explicitly
 * (config file, admin calls, gRPC ReloadConfig), the discovered ones taken out, each model's
 * traffic policy. Every change is written atomically (temp file + rename) to the state file and
 * read back at start, so a restarted server serves what it served before.
 *
 * The state belongs to one server: the file records the model base path it was made for, and a
 * server started on another path ignores it (the command line wins); a lock file keeps a second
 * server off the same file; saved models whose folder is gone, and the traffic of models no longer
 * served, are dropped at start with a note (`notes`, logged by the server).
 */

export const TrafficTargetSchema = z.union([
  z.object({ version: VersionNumberSchema, weight: z.number().min(0).max(1_000_000) }).strict(),
  z.object({ label: LabelSchema, weight: z.number().min(0).max(1_000_000) }).strict(),
]);
export type TrafficTarget = z.infer<typeof TrafficTargetSchema>;

export const ShadowSchema = z.union([
  z.object({ version: VersionNumberSchema, percent: z.number().min(0).max(100) }).strict(),
  z.object({ label: LabelSchema, percent: z.number().min(0).max(100) }).strict(),
]);
export type Shadow = z.infer<typeof ShadowSchema>;

export const TrafficSchema = z
  .object({
    /** Requests that name no version are spread over these by weight (sticky per client key). */
    split: z.array(TrafficTargetSchema).min(1).max(64).optional(),
    /** A copy of `percent` % of the routed requests goes to this version; its answers are only measured. */
    shadow: ShadowSchema.optional(),
  })
  .strict()
  .refine((t) => !t.split || t.split.some((s) => s.weight > 0), {
    message: 'split: at least one weight must be positive',
    path: ['split'],
  });
export type Traffic = z.infer<typeof TrafficSchema>;

export const StateFileSchema = z
  .object({
    format: z.literal(1),
    /** Serve every model folder under the base path, besides the listed models. */
    discover: z.boolean(),
    models: z.record(ModelNameSchema, ModelConfigSchema),
    removed: z.array(ModelNameSchema),
    traffic: z.record(ModelNameSchema, TrafficSchema),
    /** The resolved model base path of the server that wrote it (absent in files written before it was kept). */
    owner: z
      .object({ base_path: z.string().max(4096).nullable() })
      .strict()
      .optional(),
  })
  .strict();
export type ServingStateData = z.infer<typeof StateFileSchema>;

export class ServingState {
  private data: ServingStateData;
  private writes: Promise<void> = Promise.resolve();
  /** What was dropped from the saved state at start, and why (the server logs them). */
  readonly notes: string[] = [];
  private release: () => Promise<void> = async () => {};

  private constructor(
    data: ServingStateData,
    readonly basePath: string | undefined,
    private readonly file: string | undefined,
  ) {
    this.data = { ...data, owner: { base_path: basePath ?? null } };
  }

  /** Waits for the last write and gives the state file's lock back. */
  async close(): Promise<void> {
    await this.writes;
    await this.release();
  }

  /** The saved state when the state file exists, else the one the options describe. */
  static async open(options: {
    basePath?: string;
    modelConfig?: ModelServerConfig;
    stateFile?: string;
  }): Promise<ServingState> {
    const basePath = options.basePath ? path.resolve(options.basePath) : undefined;
    const release = options.stateFile ? await lockStateFile(options.stateFile) : async () => {};
    try {
      const state = await ServingState.read({ ...options, basePath });
      state.release = release;
      return state;
    } catch (error) {
      await release();
      throw error;
    }
  }

  private static async read(options: {
    basePath?: string;
    modelConfig?: ModelServerConfig;
    stateFile?: string;
  }): Promise<ServingState> {
    const basePath = options.basePath;
    const notes: string[] = [];
    if (options.stateFile) {
      const text = await readFile(options.stateFile, 'utf8').catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw new Error(`state file ${options.stateFile}: ${error.message}`);
      });
      if (text !== undefined) {
        let raw: unknown;
        try {
          raw = JSON.parse(text);
        } catch (error) {
          throw new Error(`state file ${options.stateFile} is not JSON: ${(error as Error).message}`);
        }
        const parsed = StateFileSchema.safeParse(raw);
        if (!parsed.success) throw new Error(`state file ${options.stateFile}: ${describeIssues(parsed.error.issues)}`);
        const savedFor = parsed.data.owner?.base_path;
        if (savedFor !== undefined && savedFor !== (basePath ?? null)) {
          notes.push(
            `state file ${options.stateFile} was saved by a server of ${savedFor ?? 'no model base path'}, ` +
              `not ${basePath ?? 'no model base path'}: ignored (the command line wins; the next change replaces it)`,
          );
        } else {
          const state = new ServingState(parsed.data, basePath, options.stateFile);
          state.notes.push(...notes);
          await state.dropStale();
          return state;
        }
      }
    }
    const models = Object.fromEntries(
      (options.modelConfig?.model_config_list.config ?? []).map((m) => [
        m.name,
        { ...m, base_path: path.resolve(m.base_path) },
      ]),
    );
    const state = new ServingState(
      { format: 1, discover: !options.modelConfig && basePath !== undefined, models, removed: [], traffic: {} },
      basePath,
      options.stateFile,
    );
    state.notes.push(...notes);
    return state;
  }

  /**
   * Saved models whose folder is gone are dropped (their labels and pinned versions with them), and so
   * is the traffic of a model no longer served: a split or shadow must not outlive its model.
   */
  private async dropStale(): Promise<void> {
    for (const [name, config] of Object.entries(this.data.models)) {
      const there = await stat(config.base_path).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (there) continue;
      delete this.data.models[name];
      this.notes.push(`saved model ${name}: ${config.base_path} is gone; its saved config and labels are dropped`);
    }
    const served = new Set((await this.models()).map((m) => m.name));
    for (const name of Object.keys(this.data.traffic)) {
      if (served.has(name)) continue;
      delete this.data.traffic[name];
      this.notes.push(`saved traffic of model ${name} dropped: the model is no longer served`);
    }
  }

  snapshot(): ServingStateData {
    return structuredClone(this.data);
  }

  /** Every model to serve now: the discovered folders (unless removed) overlaid by the explicit configs. */
  async models(): Promise<ModelConfig[]> {
    const out = new Map<string, ModelConfig>();
    if (this.data.discover && this.basePath) {
      const entries = await readdir(this.basePath, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (!entry.isDirectory() || !MODEL_NAME_PATTERN.test(entry.name) || this.data.removed.includes(entry.name))
          continue;
        out.set(entry.name, this.discovered(entry.name));
      }
    }
    for (const [name, config] of Object.entries(this.data.models)) out.set(name, config);
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  private discovered(name: string): ModelConfig {
    return {
      name,
      base_path: path.join(this.basePath!, name),
      model_version_policy: DEFAULT_VERSION_POLICY,
      version_labels: {},
    };
  }

  /** The explicit config of a model, or what discovery would give it. */
  async config(name: string): Promise<ModelConfig | undefined> {
    return (await this.models()).find((m) => m.name === name);
  }

  traffic(name: string): Traffic | undefined {
    return this.data.traffic[name];
  }

  labels(name: string): Record<string, number> {
    return this.data.models[name]?.version_labels ?? {};
  }

  defaultBasePath(name: string): string | undefined {
    return this.basePath ? path.join(this.basePath, name) : undefined;
  }

  async putModel(config: ModelConfig): Promise<void> {
    this.data.models[config.name] = config;
    this.data.removed = this.data.removed.filter((n) => n !== config.name);
    await this.save();
  }

  async removeModel(name: string): Promise<void> {
    delete this.data.models[name];
    delete this.data.traffic[name];
    if (this.data.discover && !this.data.removed.includes(name)) this.data.removed.push(name);
    await this.save();
  }

  async setTraffic(name: string, traffic: Traffic | undefined): Promise<void> {
    if (traffic) this.data.traffic[name] = traffic;
    else delete this.data.traffic[name];
    await this.save();
  }

  /** TF Serving's ReloadConfig: the given list supersedes everything (discovery included). */
  async replaceModels(configs: ModelConfig[]): Promise<void> {
    const names = new Set(configs.map((c) => c.name));
    this.data = {
      format: 1,
      discover: false,
      models: Object.fromEntries(configs.map((c) => [c.name, c])),
      removed: [],
      traffic: Object.fromEntries(Object.entries(this.data.traffic).filter(([name]) => names.has(name))),
      owner: this.data.owner,
    };
    await this.save();
  }

  /** Writes the state file atomically; writes are serialized so the last change always lands last. */
  private save(): Promise<void> {
    const file = this.file;
    if (!file) return Promise.resolve();
    const text = `${JSON.stringify(this.data, null, 2)}\n`;
    const write = this.writes.then(() => writeFileAtomically(file, text));
    this.writes = write.catch(() => undefined);
    return write;
  }
}
