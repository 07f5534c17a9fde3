import { createRequire } from 'node:module';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type protobufType from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TENSORFLOW_PROTO_ROOT } from '../../engine/protos';
import type { ModelServer } from '../../serving/server';
import { fashionBase, removeDir, request, startServer, until } from './helpers';

/**
 * Without the native backend (here GANTRY_BACKEND=cpu) a SavedModel version cannot run: it is
 * reported END with an error naming the missing backend and what to run, and the tfjs version
 * beside it serves as before.
 */

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs') as typeof protobufType;

/** A well-formed saved_model.pb (a serve MetaGraph with one signature; no graph needed to be refused). */
function savedModelBytes(): Uint8Array {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(TENSORFLOW_PROTO_ROOT, target);
  const SavedModel = root.loadSync('tensorflow/core/protobuf/saved_model.proto').lookupType('tensorflow.SavedModel');
  const info = (name: string) => ({ name, dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: -1 }] } });
  return SavedModel.encode(
    SavedModel.fromObject({
      savedModelSchemaVersion: 1,
      metaGraphs: [
        {
          metaInfoDef: { tags: ['serve'] },
          signatureDef: {
            serving_default: {
              inputs: { x: info('x:0') },
              outputs: { y: info('y:0') },
              methodName: 'tensorflow/serving/predict',
            },
          },
        },
      ],
    }),
  ).finish();
}

let base: string;
let server: ModelServer;
let port: number;

beforeAll(async () => {
  process.env.GANTRY_BACKEND = 'cpu';
  base = (await fashionBase('saved-model-cpu', 1)).base;
  await mkdir(path.join(base, 'exported/1/variables'), { recursive: true });
  await writeFile(path.join(base, 'exported/1/saved_model.pb'), savedModelBytes());
  server = await startServer(base);
  port = server.restPort!;
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
  delete process.env.GANTRY_BACKEND;
});

describe('SavedModel versions without the native backend', () => {
  it('reports the version END naming the backend and the set-up to run; the tfjs model still serves', async () => {
    expect(server.backend.name).toBe('cpu');
    const status = async () => (await request(port, 'GET', '/v1/models/exported')).json;
    await until(async () => (await status())?.model_version_status?.[0]?.state === 'END', 30_000, 'END');
    const message = (await status()).model_version_status[0].status.error_message as string;
    expect(message).toMatch(/native backend \(tfjs-node/);
    expect(message).toMatch(/the cpu backend/);
    expect(message).toMatch(/bash scripts\/setup\.sh/);
    const image = Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0.5]));
    const answer = await request(port, 'POST', '/v1/models/fashion:predict', { instances: [image] });
    expect(answer.status).toBe(200);
    expect(answer.json.predictions[0]).toHaveLength(10);
    const refused = await request(port, 'POST', '/v1/models/exported:predict', { instances: [1] });
    expect(refused.status).toBeGreaterThanOrEqual(400);
  });
});
