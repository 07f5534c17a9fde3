import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { connectClient } from '../control/connect';
import { findRunningEmbeddedTemporal } from '../control/embedded-temporal';
import { isPortFree } from '../control/ports';
import type { GantryHome } from '../control/home';
import type { TemporalTarget } from '../control/temporal-env';
import { startDashboard, type Dashboard } from './server';

/**
 * The dashboard as `gantry ui`, `gantry dev` and `make demo` start it: its own Temporal connection (closed with
 * it), the admin token the home's model server has (GANTRY_SERVE_ADMIN_TOKEN, else GANTRY_HOME/admin-token) for
 * its actions, and a link to the embedded server's Web UI when it has one.
 */

/** The admin token actions need; null (actions refused) when this home has none. Never made here. */
export async function adminTokenOfHome(home: GantryHome): Promise<string | null> {
  if (process.env.GANTRY_SERVE_ADMIN_TOKEN) return process.env.GANTRY_SERVE_ADMIN_TOKEN;
  try {
    return (await readFile(path.join(home.root, 'admin-token'), 'utf8')).trim() || null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The dashboard's usual port: `gantry ui`'s default, and `gantry dev`'s when it is free. */
export const DASHBOARD_PORT = 8350;

export async function startHomeDashboard(
  home: GantryHome,
  options: {
    host?: string;
    /** 'auto': DASHBOARD_PORT when it is free, else any free port (a second stack beside the first). */
    port?: number | 'auto';
    target?: TemporalTarget;
    temporalUiUrl?: string | null;
  } = {},
): Promise<Dashboard & { adminToken: boolean }> {
  const port =
    options.port === 'auto' ? ((await isPortFree(DASHBOARD_PORT)) ? DASHBOARD_PORT : 0) : (options.port ?? 0);
  const { client, connection, target } = await connectClient(options.target);
  try {
    const uiUrl =
      options.temporalUiUrl !== undefined
        ? options.temporalUiUrl
        : ((await findRunningEmbeddedTemporal(home))?.uiUrl ?? null);
    const adminToken = await adminTokenOfHome(home);
    const dashboard = await startDashboard({
      client,
      host: options.host,
      port,
      adminToken,
      temporalUi: uiUrl ? { url: uiUrl, namespace: target.namespace } : null,
    });
    return {
      ...dashboard,
      adminToken: adminToken !== null,
      async close() {
        await dashboard.close();
        await connection.close();
      },
    };
  } catch (error) {
    await connection.close();
    throw error;
  }
}
