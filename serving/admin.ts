import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import {
  LabelSchema,
  ModelConfigSchema,
  VersionNumberSchema,
  VersionPolicySchema,
  type ModelConfig,
  type ModelServerConfig,
} from './config';
import { describeIssues } from '../validation/issues';
import { invalidArgument, ServingError } from './errors';
import type { VersionManager } from './manager';
import { checkModelName, labelledVersion } from './names';
import type { RepositorySource } from './source';
import type { ServingState, Traffic } from './state';
import { TrafficSchema } from './state';

/**
 * The admin operations: add, replace, reload or remove one model without restating the others;
 * set and delete version labels; set a traffic split and shadow. Each change is persisted (see
 * ServingState) and applied by an immediate poll, so when a call returns its effect is live —
 * an added model is loaded (or its failure is in its status).
 */

export const PutModelBodySchema = z
  .object({
    base_path: z.string().min(1).optional(),
    model_platform: z.string().optional(),
    model_version_policy: VersionPolicySchema.optional(),
    version_labels: z.record(LabelSchema, VersionNumberSchema).optional(),
  })
  .strict();
export const PutLabelBodySchema = z.object({ version: VersionNumberSchema }).strict();

export function parseBody<T extends z.ZodType>(schema: T, body: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw invalidArgument(`${what}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** The admin API's model names pass the same rule as the public doors' (serving/names.ts). */
export const parseModelName = (name: string): string => checkModelName(name);

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export class Admin {
  private readonly tokenDigest: Buffer | undefined;

  constructor(
    private readonly deps: { state: ServingState; manager: VersionManager; source: RepositorySource },
    token: string | undefined,
  ) {
    this.tokenDigest = token ? digest(token) : undefined;
  }

  /** Checks an `Authorization: Bearer <token>` value; throws UNAUTHENTICATED or PERMISSION_DENIED. */
  authorize(authorization: string | undefined): void {
    if (!this.tokenDigest)
      throw new ServingError(
        'PERMISSION_DENIED',
        'the admin API is off: start the server with an admin token (--admin-token-file, or GANTRY_SERVE_ADMIN_TOKEN)',
      );
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    // Digests have equal length, so timingSafeEqual compares without leaking the token's length.
    if (!match || !timingSafeEqual(digest(match[1]!), this.tokenDigest))
      throw new ServingError('UNAUTHENTICATED', 'admin calls need "Authorization: Bearer <admin token>"');
  }

  private async existing(name: string): Promise<ModelConfig> {
    const config = await this.deps.state.config(name);
    if (!config) throw new ServingError('NOT_FOUND', `model "${name}" is not served here`);
    return config;
  }

  private apply(): Promise<void> {
    return this.deps.source.poll();
  }

  async putModel(name: string, body: unknown): Promise<ModelConfig> {
    const input = parseBody(PutModelBodySchema, body, 'body');
    const current = await this.deps.state.config(name);
    const basePath = input.base_path ?? current?.base_path ?? this.deps.state.defaultBasePath(name);
    if (!basePath)
      throw invalidArgument('base_path: required (the server has no model base path to put the model under)');
    const config = parseBody(
      ModelConfigSchema,
      {
        name,
        base_path: basePath,
        ...((input.model_platform ?? current?.model_platform)
          ? { model_platform: input.model_platform ?? current?.model_platform }
          : {}),
        model_version_policy: input.model_version_policy ?? current?.model_version_policy,
        version_labels: input.version_labels ?? current?.version_labels ?? {},
      },
      'model',
    );
    await this.deps.state.putModel(config);
    await this.apply();
    return config;
  }

  async removeModel(name: string): Promise<void> {
    await this.existing(name);
    await this.deps.state.removeModel(name);
    await this.apply();
  }

  /** Retries failed versions and re-reads the model's folder now. */
  async reloadModel(name: string): Promise<void> {
    await this.existing(name);
    this.deps.manager.forgetFailures(name);
    await this.apply();
  }

  async setLabel(name: string, label: string, body: unknown): Promise<void> {
    const config = await this.existing(name);
    const labelName = parseBody(LabelSchema, label, 'label');
    const { version } = parseBody(PutLabelBodySchema, body, 'body');
    // TF Serving's rule: a label may only be pointed at a version that is loaded.
    if (!this.deps.manager.availableVersions(name).includes(version)) {
      throw new ServingError(
        'FAILED_PRECONDITION',
        `version ${version} of model "${name}" is not AVAILABLE; a label can only point at a loaded version`,
      );
    }
    await this.deps.state.putModel({ ...config, version_labels: { ...config.version_labels, [labelName]: version } });
    await this.apply();
  }

  async deleteLabel(name: string, label: string): Promise<void> {
    const config = await this.existing(name);
    if (labelledVersion(config.version_labels, label) === undefined)
      throw new ServingError('NOT_FOUND', `model "${name}" has no version label "${label}"`);
    const { [label]: _, ...rest } = config.version_labels;
    await this.deps.state.putModel({ ...config, version_labels: rest });
    await this.apply();
  }

  async setTraffic(name: string, body: unknown): Promise<Traffic> {
    const config = await this.existing(name);
    const traffic = parseBody(TrafficSchema, body, 'body');
    const available = this.deps.manager.availableVersions(name);
    const targets = [...(traffic.split ?? []), ...(traffic.shadow ? [traffic.shadow] : [])];
    for (const target of targets) {
      const version = 'version' in target ? target.version : labelledVersion(config.version_labels, target.label);
      const what = 'version' in target ? `version ${target.version}` : `label "${target.label}"`;
      if (version === undefined) throw new ServingError('FAILED_PRECONDITION', `model "${name}" has no ${what}`);
      if (!available.includes(version))
        throw new ServingError(
          'FAILED_PRECONDITION',
          `${what} of model "${name}" is not AVAILABLE (version ${version})`,
        );
    }
    await this.deps.state.setTraffic(name, traffic);
    return traffic;
  }

  async clearTraffic(name: string): Promise<void> {
    await this.existing(name);
    await this.deps.state.setTraffic(name, undefined);
  }

  /** TF Serving's HandleReloadConfigRequest: the new list supersedes the old one. */
  async reloadConfig(config: ModelServerConfig): Promise<void> {
    await this.deps.state.replaceModels(config.model_config_list.config);
    await this.apply();
  }
}
