import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServable, type LoadOptions } from '../../serving/loader';
import { startModelServer, type ModelServer } from '../../serving/server';
import { selectBackend } from '../../engine/backend';
import { burst, fashionBase, nestedImage, removeDir, request, startServer } from './helpers';

/**
 * Bad input of every kind gets a clear 4xx with {"error": …} naming what is wrong, and the
 * server keeps serving: malformed JSON, wrong shapes and dtypes, unknown model / version /
 * label, an oversized body, path-traversal names, admin calls without a token, a full queue.
 */

let base: string;
let server: ModelServer;
let port: number;
const image = nestedImage(new Float32Array(784).fill(10), 0);

beforeAll(async () => {
  await selectBackend();
  ({ base } = await fashionBase('bad', 9));
  // No admin token: the admin API is off. A 64 KiB body limit: 30 images in JSON exceed it.
  server = await startServer(base, { bodyLimitBytes: 64 * 1024 });
  port = server.restPort!;
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

const predict = (body: unknown, path = '/v1/models/fashion:predict', headers: Record<string, string> = {}) =>
  request(port, 'POST', path, body, headers);

async function expectError(
  answer: Promise<{ status: number; json: any }>,
  status: number,
  message: RegExp,
): Promise<void> {
  const { status: got, json } = await answer;
  expect({ status: got, error: json?.error }).toMatchObject({ status, error: expect.stringMatching(message) });
}

/** `count` concurrent POSTs of `body` from a child process; their statuses and bodies. */
describe('bad input', () => {
  it('malformed bodies and wrong request shapes: 400 naming the problem', async () => {
    await expectError(predict('{"instances": [1, 2', undefined, { 'content-type': 'application/json' }), 400, /JSON/);
    await expectError(predict('not json at all'), 400, /not JSON/);
    await expectError(predict({}), 400, /exactly one of "instances"/);
    await expectError(predict({ instances: [image], inputs: [image] }), 400, /exactly one of/);
    await expectError(predict({ instances: [] }), 400, /at least one instance/);
    await expectError(predict({ instances: 'abc' }), 400, /instances/);
    await expectError(
      predict({ instances: [image], signature_name: 'other' }),
      400,
      /signature_name "other" not found/,
    );
  });

  it('wrong shapes and dtypes: 400 naming the element', async () => {
    await expectError(predict({ instances: [image.slice(0, 27)] }), 400, /instances\[0\]: expected an array of 28/);
    await expectError(predict({ instances: [[[...image[0]!.slice(0, 3)]]] }), 400, /instances\[0\]/);
    const stringPixel = structuredClone(image);
    stringPixel[3]![4]![0] = '7' as unknown as number;
    await expectError(
      predict({ instances: [stringPixel] }),
      400,
      /instances\[0\]\[3\]\[4\]\[0\]: expected a number \(dtype float32\), got the string "7"/,
    );
    const boolPixel = structuredClone(image);
    boolPixel[0]![0]![0] = true as unknown as number;
    await expectError(predict({ instances: [boolPixel] }), 400, /got boolean true/);
    await expectError(
      predict('{"instances": [' + JSON.stringify(image).replace('10', '1e999') + ']}', undefined, {
        'content-type': 'application/json',
      }),
      400,
      /Infinity/,
    );
    await expectError(
      predict({ inputs: { b64: Buffer.alloc(100).toString('base64') } }),
      400,
      /not a whole number of rows/,
    );
    await expectError(predict({ instances: [{ input: image, extra: 1 }] }), 400, /unknown input "extra"/);
    await expectError(
      request(port, 'POST', '/v1/models/fashion:predict', Buffer.alloc(10), {
        'content-type': 'application/x-protobuf',
      }),
      400,
      /PredictRequest|inputs/,
    );
    await expectError(
      request(port, 'POST', '/v1/models/fashion:classify', { examples: [{ input: [1, 2, 3] }] }),
      400,
      /expected an array of 28/,
    );
  });

  it('unknown model, version or label: 404; a version that is not a number: 400', async () => {
    await expectError(predict({ instances: [image] }, '/v1/models/nope:predict'), 404, /"nope"/);
    await expectError(predict({ instances: [image] }, '/v1/models/fashion/versions/5:predict'), 404, /version 5/);
    await expectError(
      predict({ instances: [image] }, '/v1/models/fashion/labels/canary:predict'),
      404,
      /label "canary"/,
    );
    await expectError(request(port, 'GET', '/v1/models/nope'), 404, /nope/);
    await expectError(request(port, 'GET', '/v1/models/fashion/versions/3'), 404, /version 3/);
    await expectError(request(port, 'GET', '/v1/models/fashion/versions/x1'), 400, /not a positive integer/);
    await expectError(predict({ instances: [image] }, '/v1/models/fashion:explode'), 404, /unknown method/);
    await expectError(request(port, 'GET', '/v2/anything'), 404, /Malformed request/);
  });

  it('an oversized body: 413', async () => {
    await expectError(predict({ instances: Array.from({ length: 30 }, () => image) }), 413, /body/i);
  });

  it('path-traversal names never reach the file system', async () => {
    await expectError(
      predict({ instances: [image] }, '/v1/models/..%2F..%2Fetc:predict'),
      400,
      /model name|Malformed request/,
    );
    await expectError(predict({ instances: [image] }, '/v1/models/..:predict'), 400, /model name/);
    await expectError(request(port, 'GET', '/v1/models/.staging'), 400, /model name/);
    const status = await request(port, 'GET', '/v1/models/../../etc/passwd');
    expect(status.status).toBeGreaterThanOrEqual(400);
    expect(status.status).toBeLessThan(500);
  });

  it('admin calls without a configured token are refused', async () => {
    await expectError(request(port, 'PUT', '/v1/admin/models/evil', { base_path: '/etc' }), 403, /admin API is off/);
    await expectError(
      request(
        port,
        'PUT',
        '/v1/admin/models/evil',
        { base_path: '/etc' },
        { authorization: 'Bearer anything-anything-anything' },
      ),
      403,
      /admin API is off/,
    );
    expect(server.manager.hasModel('evil')).toBe(false);
  });

  it('a full batch queue answers 429, and the server still serves afterwards', async () => {
    // A model call that takes 250 ms: requests pile up while it runs (long enough that a loaded machine, which may
    // starve the flooding process, still gets every request in while the first runs).
    const slow = async (dir: string, options: LoadOptions) => {
      const servable = await loadServable(dir, options);
      return {
        ...servable,
        run(inputs: Parameters<typeof servable.run>[0]) {
          const end = performance.now() + 250;
          while (performance.now() < end);
          return servable.run(inputs);
        },
      };
    };
    const tight = await startModelServer(
      { modelBasePath: base, restPort: 0, grpcPort: null, batching: { max_batch_size: 1, max_enqueued_batches: 2 } },
      { loadServable: slow },
    );
    try {
      // The clients run in a process of their own: in this one they would wait for the server's event loop.
      let answers: { status: number; body: string }[] = [];
      // A burst that still drew no 429 (the machine starved the flooding process) is sent again.
      for (let attempt = 0; attempt < 3 && !answers.some((a) => a.status === 429); attempt++)
        answers = await burst(
          tight.restPort!,
          '/v1/models/fashion:predict',
          40,
          JSON.stringify({ instances: [image] }),
        );
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
      expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
      expect(JSON.parse(answers.find((a) => a.status === 429)!.body).error).toMatch(/queue .* full/);
    } finally {
      await tight.close();
    }
    const ok = await predict({ instances: [image] });
    expect(ok.status).toBe(200);
    expect((await request(port, 'GET', '/healthz')).status).toBe(200);
  });
});
