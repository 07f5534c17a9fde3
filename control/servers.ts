import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { bearerOf } from '../serving/feedback-auth';
import { describeIssues } from '../validation/issues';
import type { GantryHome } from './home';

/**
 * The model servers a deployment drives: every replica of `gantry serve` that deploy activities
 * reconcile and rollouts read metrics from. Listed in `GANTRY_SERVERS` (comma-separated REST base
 * URLs; admin token from GANTRY_SERVE_ADMIN_TOKEN, feedback token from GANTRY_FEEDBACK_TOKEN; admin URLs, in
 * the same order, from GANTRY_SERVERS_ADMIN when the admin API listens apart), else in
 * `<GANTRY_HOME>/servers.json`, which the local stack (`gantry dev`, `make demo`) writes for the server it starts.
 * None listed = no serving.
 */

export const ServerTargetSchema = z
  .object({
    /** REST base URL, e.g. http://127.0.0.1:8501 */
    url: z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, '')),
    /** The admin API's base URL when it listens apart (`gantry serve --admin-port`); default: `url`. */
    adminUrl: z
      .url({ protocol: /^https?$/ })
      .transform((u) => u.replace(/\/+$/, ''))
      .optional(),
    adminToken: z.string().min(1).optional(),
    /** Bearer token for :feedback (a name:token line of the server's feedback token file, or the token). */
    feedbackToken: z.string().min(1).optional(),
  })
  .strict();
export type ServerTarget = z.infer<typeof ServerTargetSchema>;

export const ServersFileSchema = z.object({ servers: z.array(ServerTargetSchema) }).strict();

export function serversFile(home: GantryHome): string {
  return path.join(home.root, 'servers.json');
}

export class ServersConfigError extends Error {
  override name = 'ServersConfigError';
}

/** The configured servers, env first; throws ServersConfigError naming the field at fault. */
export function servingTargets(home: GantryHome, env: NodeJS.ProcessEnv = process.env): ServerTarget[] {
  const listed = env.GANTRY_SERVERS?.trim();
  if (listed) {
    const adminUrls = (env.GANTRY_SERVERS_ADMIN ?? '')
      .split(',')
      .map((url) => url.trim())
      .filter(Boolean);
    const urls = listed
      .split(',')
      .map((url) => url.trim())
      .filter(Boolean);
    if (adminUrls.length > 0 && adminUrls.length !== urls.length)
      throw new ServersConfigError(
        `GANTRY_SERVERS_ADMIN lists ${adminUrls.length} admin URLs for ${urls.length} servers in GANTRY_SERVERS`,
      );
    return urls.map((url, i) => {
      const parsed = ServerTargetSchema.safeParse({
        url,
        ...(adminUrls[i] ? { adminUrl: adminUrls[i] } : {}),
        ...(env.GANTRY_SERVE_ADMIN_TOKEN ? { adminToken: env.GANTRY_SERVE_ADMIN_TOKEN } : {}),
        ...(env.GANTRY_FEEDBACK_TOKEN ? { feedbackToken: bearerOf(env.GANTRY_FEEDBACK_TOKEN) } : {}),
      });
      if (!parsed.success)
        throw new ServersConfigError(
          `GANTRY_SERVERS[${i}]: ${JSON.stringify(url)} (admin ${JSON.stringify(adminUrls[i] ?? url)}) ` +
            'is not an http(s) URL',
        );
      return parsed.data;
    });
  }
  const file = serversFile(home);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ServersConfigError(`${file}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ServersConfigError(`${file}: not JSON (${(error as Error).message})`);
  }
  const parsed = ServersFileSchema.safeParse(json);
  if (!parsed.success) {
    throw new ServersConfigError(`${file}: ${describeIssues(parsed.error)}`);
  }
  return parsed.data.servers;
}
