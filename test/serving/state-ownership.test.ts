import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStateFile } from '../../cli/commands/serve';
import { selectBackend } from '../../engine/backend';
import type { ModelServer } from '../../serving/server';
import { RecordingLogger } from './fakes';
import { fashionBase, removeDir, startServer, tempDir } from './helpers';

/**
 * A server's saved state is its own: a server started by hand on another model folder never loads
 * the state another server left in GANTRY_HOME (the reported bug: it pinned the other server's
 * versions and never loaded the new folder's), saved traffic of a model no longer served is dropped,
 * and two servers never share one state file (a lock with the owner's pid; a dead owner's is stale).
 */

let home: string;
let dir: string;
let other: string;
const servers: ModelServer[] = [];

/** What the local stack's server left behind: model "fashion" pinned to version 1 of its own folder, labelled. */
function othersState(otherBase: string) {
  return {
    format: 1,
    discover: true,
    models: {
      fashion: {
        name: 'fashion',
        base_path: path.join(otherBase, 'fashion'),
        model_version_policy: { specific: { versions: [1] } },
        version_labels: { stable: 1 },
      },
    },
    removed: [],
    traffic: { fashion: { split: [{ label: 'stable', weight: 1 }] } },
  };
}

beforeAll(async () => {
  await selectBackend();
  home = await tempDir('state-home');
  ({ base: other } = await fashionBase('state-other', 11));
  ({ base: dir } = await fashionBase('state-dir', 21, 22));
  await writeFile(path.join(home, 'serving-state.json'), JSON.stringify(othersState(other)));
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all([home, dir, other].map(removeDir));
});

async function started(options: Parameters<typeof startServer>[1], logger = new RecordingLogger()) {
  const server = await startServer(dir, options, { logger });
  servers.push(server);
  return server;
}

describe('a server started by hand on another folder', () => {
  it("gets a state file of its own and serves the folder's versions, not the pinned ones", async () => {
    const own = defaultStateFile(home, { modelBasePath: dir, restPort: 0, grpcPort: 'off' });
    expect(own).not.toBe(path.join(home, 'serving-state.json'));
    expect(path.dirname(own)).toBe(path.join(home, 'serving-state'));
    // Another folder or other ports: another file.
    expect(defaultStateFile(home, { modelBasePath: other, restPort: 0, grpcPort: 'off' })).not.toBe(own);
    expect(defaultStateFile(home, { modelBasePath: dir, restPort: 8501, grpcPort: 8500 })).not.toBe(own);
    const server = await started({ stateFile: own });
    expect(server.manager.availableVersions('fashion')).toEqual([2]);
    expect(server.manager.config('fashion')?.base_path).toBe(path.join(dir, 'fashion'));
    await server.close();
    servers.pop();
    // The other server's file is untouched.
    expect(JSON.parse(await readFile(path.join(home, 'serving-state.json'), 'utf8'))).toEqual(othersState(other));
  });

  it('ignores, with a log line, a state file saved by a server of another folder', async () => {
    const file = path.join(home, 'named.json');
    await writeFile(file, JSON.stringify({ ...othersState(other), owner: { base_path: other } }));
    const logger = new RecordingLogger();
    const server = await started({ stateFile: file }, logger);
    expect(server.manager.availableVersions('fashion')).toEqual([2]);
    expect(server.manager.config('fashion')?.version_labels).toEqual({});
    expect(logger.lines.join('\n')).toMatch(/was saved by a server of .*state-other.*ignored/);
    await server.close();
    servers.pop();
  });

  it('drops saved models whose folder is gone and the traffic of models no longer served', async () => {
    const file = path.join(home, 'stale.json');
    const saved = othersState(path.join(home, 'gone'));
    await writeFile(
      file,
      JSON.stringify({
        ...saved,
        traffic: { ...saved.traffic, vanished: { split: [{ version: 3, weight: 1 }] } },
        owner: { base_path: dir },
      }),
    );
    const logger = new RecordingLogger();
    const server = await started({ stateFile: file }, logger);
    expect(server.manager.availableVersions('fashion')).toEqual([2]);
    const log = logger.lines.join('\n');
    expect(log).toMatch(/saved model fashion: .*gone.* is gone; its saved config and labels are dropped/);
    expect(log).toMatch(/saved traffic of model vanished dropped/);
    expect(log).not.toMatch(/traffic of model fashion/);
    await server.close();
    servers.pop();
  });
});

describe('one state file, one server', () => {
  it('refuses a second server on the same file, and starts once the first is closed', async () => {
    const file = path.join(home, 'shared.json');
    const first = await started({ stateFile: file });
    await expect(started({ stateFile: file })).rejects.toThrow(
      /state file .*shared\.json is in use by another model server \(pid \d+, lock .*shared\.json\.lock\)/,
    );
    expect(Number((await readFile(`${file}.lock`, 'utf8')).trim())).toBe(process.pid);
    await first.close();
    servers.splice(servers.indexOf(first), 1);
    const second = await started({ stateFile: file });
    expect(second.manager.availableVersions('fashion')).toEqual([2]);
    await second.close();
    servers.pop();
  });

  it("refuses while another process holds the lock, takes over a dead process's stale lock", async () => {
    const file = path.join(home, 'held.json');
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      await writeFile(`${file}.lock`, `${holder.pid}\n`);
      await expect(started({ stateFile: file })).rejects.toThrow(
        new RegExp(`in use by another model server \\(pid ${holder.pid},`),
      );
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    // The holder is dead now: its lock is stale.
    const server = await started({ stateFile: file });
    expect(Number((await readFile(`${file}.lock`, 'utf8')).trim())).toBe(process.pid);
    await server.close();
    servers.pop();
  });
});
