import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ActionRefused, approve, promoteVersion, rollbackModel, stopExperiment } from '../control/actions';
import {
  listModels,
  listRuns,
  listStudies,
  readExperiment,
  readRollout,
  readRun,
  readStudy,
  readStudySpace,
} from '../control/reads';
import { readRegistry } from '../control/registry';
import { experimentView, rolloutView, studyParams } from './views';

/**
 * The dashboard (`gantry ui`, and part of `gantry dev`): a JSON API over the same reads as the CLI
 * (control/reads.ts: Temporal's visibility, each workflow's query, the registry) and a single page that polls it,
 * served from this folder and node_modules (uPlot) with no network access. Reads are open to whoever reaches the
 * port (loopback by default); actions — the CLI's Updates, control/actions.ts — need the admin token.
 */

export interface DashboardOptions {
  client: Client;
  host?: string;
  /** 0: a free port. */
  port?: number;
  /** The token actions need (`Authorization: Bearer …`); null: every action is refused. */
  adminToken: string | null;
  /** Temporal's Web UI, to link each run to its workflow page; null when the server has none. */
  temporalUi?: { url: string; namespace: string } | null;
}

export interface Dashboard {
  url: string;
  port: number;
  close(): Promise<void>;
}

const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));
const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve('uplot'));

/** Every file the page needs, by URL path: a fixed list, so no request names a file of its own. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: path.join(STATIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/assets/app.js': { file: path.join(STATIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/assets/app.css': { file: path.join(STATIC_DIR, 'app.css'), type: 'text/css; charset=utf-8' },
  '/assets/uPlot.iife.min.js': {
    file: path.join(UPLOT_DIR, 'uPlot.iife.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
  '/assets/uPlot.min.css': { file: path.join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

// Bounded before they reach Temporal: a model name as pipelines/spec.ts allows it, a workflow id of safe characters.
const ModelParam = z.object({ model: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'not a model name') });
// A run id may hold a slash: a study's best trial runs as `<study>/best`.
const RunParam = z.object({ runId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,254}$/, 'not a run id') });
const StudyParam = z.object({ studyId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$/, 'not a study id') });
const Reason = z.string().max(500).optional();
const PromoteBody = z.object({ version: z.number().int().min(1), reason: Reason }).strict();
const RollbackBody = z.object({ to: z.number().int().min(1).optional(), reason: Reason }).strict();
const ReasonBody = z.object({ reason: Reason }).strict();

class BadRequest extends Error {}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new BadRequest(`${what}${issue.path.length ? `.${issue.path.join('.')}` : ''}: ${issue.message}`);
  }
  return result.data;
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** 401 without a bearer token, 403 with a wrong one or when actions are off; undefined when allowed. */
function refusal(request: FastifyRequest, tokenDigest: Buffer | null): { code: number; error: string } | undefined {
  if (!tokenDigest) return { code: 403, error: 'actions are off: the dashboard was started without an admin token' };
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (!match) return { code: 401, error: 'actions need "Authorization: Bearer <admin token>"' };
  // Digests have equal length, so timingSafeEqual compares without leaking the token's length.
  if (!timingSafeEqual(digest(match[1]!), tokenDigest)) return { code: 403, error: 'wrong admin token' };
  return undefined;
}

export async function createDashboardServer(options: DashboardOptions): Promise<FastifyInstance> {
  const { client } = options;
  const tokenDigest = options.adminToken ? digest(options.adminToken) : null;
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [route, asset] of Object.entries(ASSETS))
    assets.set(route, { body: await readFile(asset.file), type: asset.type });

  const app = Fastify({ logger: false, bodyLimit: 16 * 1024 });
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply: FastifyReply) => {
    if (error instanceof BadRequest) return reply.code(400).send({ error: error.message });
    if (error instanceof ActionRefused) return reply.code(409).send({ error: error.message });
    if (error.statusCode && error.statusCode < 500) return reply.code(error.statusCode).send({ error: error.message });
    return reply.code(502).send({ error: `reading Gantry's state failed: ${error.message}` });
  });

  for (const [route, asset] of assets)
    app.get(route, (_request, reply) =>
      reply.header('content-type', asset.type).header('cache-control', 'no-cache').send(asset.body),
    );

  const temporalLink = (workflowId: string) =>
    options.temporalUi
      ? `${options.temporalUi.url}/namespaces/${encodeURIComponent(options.temporalUi.namespace)}/workflows/` +
        encodeURIComponent(workflowId)
      : null;

  app.get('/api/runs', async () => ({ runs: await listRuns(client) }));

  app.get('/api/runs/:runId', async (request, reply) => {
    const { runId } = parse(RunParam, request.params, 'runId');
    const run = await readRun(client, runId, { replicas: true });
    if (!run) return reply.code(404).send({ error: `no run with id "${runId}"` });
    return { ...run, temporalUrl: temporalLink(runId) };
  });

  app.get('/api/models', async () => ({ models: await listModels(client) }));

  app.get('/api/models/:model', async (request, reply) => {
    const { model } = parse(ModelParam, request.params, 'model');
    const registry = await readRegistry(client, model);
    if (!registry) return reply.code(404).send({ error: `no model named "${model}" is registered` });
    const [rollout, experiment] = await Promise.all([readRollout(client, model), readExperiment(client, model)]);
    return {
      registry,
      rollout: rollout ? rolloutView(rollout.status, rollout.running) : null,
      experiment: experiment ? experimentView(experiment.status, experiment.running) : null,
    };
  });

  app.get('/api/tuning', async () => ({ studies: await listStudies(client) }));

  app.get('/api/tuning/:studyId', async (request, reply) => {
    const { studyId } = parse(StudyParam, request.params, 'studyId');
    const study = await readStudy(client, studyId);
    if (!study) return reply.code(404).send({ error: `no tuning study with id "${studyId}"` });
    const space = study.study ? await readStudySpace(client, studyId) : null;
    return {
      ...study,
      params: study.study ? studyParams(study.study, space) : [],
      temporalUrl: temporalLink(studyId),
    };
  });

  /** An action: the token first (nothing about the model is read for a caller without it), then the Update. */
  const action = (route: string, run: (model: string, body: unknown) => Promise<unknown>) =>
    app.post(route, async (request, reply) => {
      const refused = refusal(request, tokenDigest);
      if (refused) return reply.code(refused.code).send({ error: refused.error });
      const { model } = parse(ModelParam, request.params, 'model');
      return { ok: true, result: await run(model, request.body) };
    });
  action('/api/models/:model/promote', async (model, body) => {
    const { version, reason } = parse(PromoteBody, body, 'body');
    return promoteVersion(client, model, version, reason ?? 'from the dashboard');
  });
  action('/api/models/:model/rollback', async (model, body) => {
    const { to, reason } = parse(RollbackBody, body, 'body');
    return rollbackModel(client, model, { to, reason: reason ?? 'rolled back from the dashboard' });
  });
  action('/api/models/:model/approve', async (model, body) => {
    const { reason } = parse(ReasonBody, body, 'body');
    return approve(client, model, reason ?? 'approved from the dashboard');
  });
  action('/api/models/:model/experiment/stop', async (model, body) => {
    const { reason } = parse(ReasonBody, body, 'body');
    return stopExperiment(client, model, reason ?? 'stopped from the dashboard');
  });
  return app;
}

/** Starts the dashboard on `host:port` (loopback and a free port by default). */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const app = await createDashboardServer(options);
  const host = options.host ?? '127.0.0.1';
  await app.listen({ host, port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 0);
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return { url: `http://${shown}:${port}`, port, close: () => app.close() };
}
