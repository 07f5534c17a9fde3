import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gantryHome } from '../../control/home';
import { ServersConfigError, servingTargets } from '../../control/servers';
import { selectBackend } from '../../engine/backend';
import { ServingClient } from '../../serving/client';
import type { ModelServer } from '../../serving/server';
import { fashionBase, removeDir, request, startServer } from './helpers';

/**
 * The admin API on an address of its own: the public REST port answers 404 for every admin path,
 * the admin port serves only the admin API (still behind the bearer token), and the clients that
 * drive it (ServingClient, the servers list the deploy activities read) call the admin URL.
 */

const TOKEN = 'admin-plane-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
let base: string;
let server: ModelServer;

beforeAll(async () => {
  await selectBackend();
  ({ base } = await fashionBase('admin-plane', 31, 32));
  server = await startServer(base, { adminToken: TOKEN, adminPort: 0 });
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

describe('a separate admin plane', () => {
  it('listens on its own loopback port; the public port has no admin route', async () => {
    expect(server.adminPort).not.toBeNull();
    expect(server.adminPort).not.toBe(server.restPort);
    expect(server.adminHost).toBe('127.0.0.1');
    const onPublic = await request(server.restPort!, 'GET', '/v1/admin/state', undefined, AUTH);
    expect(onPublic.status).toBe(404);
    const putOnPublic = await request(
      server.restPort!,
      'PUT',
      '/v1/admin/models/fashion/labels/stable',
      {
        version: 2,
      },
      AUTH,
    );
    expect(putOnPublic.status).toBe(404);
    const onAdmin = await request(server.adminPort!, 'GET', '/v1/admin/state', undefined, AUTH);
    expect(onAdmin.status).toBe(200);
    expect(onAdmin.json).toMatchObject({ models: [{ name: 'fashion' }] });
    // The admin port serves nothing public, and still wants the token.
    expect((await request(server.adminPort!, 'GET', '/v1/models/fashion')).status).toBe(404);
    expect((await request(server.adminPort!, 'GET', '/v1/admin/state')).status).toBe(401);
    // Predict still answers on the public port.
    expect((await request(server.restPort!, 'GET', '/v1/models/fashion')).status).toBe(200);
  });

  it('is what ServingClient calls for admin work when the target names an admin URL', async () => {
    const client = new ServingClient({
      url: `http://127.0.0.1:${server.restPort}`,
      adminUrl: `http://127.0.0.1:${server.adminPort}`,
      adminToken: TOKEN,
    });
    await client.setLabel('fashion', 'stable', 2);
    expect((await client.adminState()).state.models.fashion?.version_labels).toEqual({ stable: 2 });
    // Without the admin URL the client would ask the public port, which does not know the route.
    const publicOnly = new ServingClient({ url: `http://127.0.0.1:${server.restPort}`, adminToken: TOKEN });
    await expect(publicOnly.adminState()).rejects.toThrow(/404|Malformed request/);
  });

  it("'same' keeps the admin API on the REST port", async () => {
    const same = await startServer(base, { adminToken: TOKEN, adminPort: 'same' });
    try {
      expect(same.adminPort).toBe(same.restPort);
      expect((await request(same.restPort!, 'GET', '/v1/admin/state', undefined, AUTH)).status).toBe(200);
    } finally {
      await same.close();
    }
  });
});

describe('the servers list', () => {
  const home = gantryHome({ GANTRY_HOME: path.join(base ?? '/tmp', 'no-home') });
  it('takes admin URLs from GANTRY_SERVERS_ADMIN, one per server', () => {
    const env = {
      GANTRY_SERVERS: 'http://a:8501,http://b:8501/',
      GANTRY_SERVERS_ADMIN: 'http://127.0.0.1:8502, http://127.0.0.1:9502/',
      GANTRY_SERVE_ADMIN_TOKEN: TOKEN,
    };
    expect(servingTargets(home, env)).toEqual([
      { url: 'http://a:8501', adminUrl: 'http://127.0.0.1:8502', adminToken: TOKEN },
      { url: 'http://b:8501', adminUrl: 'http://127.0.0.1:9502', adminToken: TOKEN },
    ]);
    expect(servingTargets(home, { GANTRY_SERVERS: 'http://a:8501' })).toEqual([{ url: 'http://a:8501' }]);
    expect(() =>
      servingTargets(home, { GANTRY_SERVERS: 'http://a:8501', GANTRY_SERVERS_ADMIN: 'http://x,http://y' }),
    ).toThrow(ServersConfigError);
  });
});
