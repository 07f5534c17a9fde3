import http2 from 'node:http2';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcLimitsSchema, parseGrpcChannelArguments } from '../../serving/config';
import type { Servable } from '../../serving/loader';
import type { ModelServer } from '../../serving/server';
import { predictionServiceClient, removeDir, request, startServer, tempDir } from './helpers';

/**
 * Connection limits with short timeouts, over real sockets: 200 REST clients trickling their headers or
 * body a byte at a time are cut at the headers / request timeout while a normal client keeps getting
 * prompt answers; on gRPC, calls that never finish sending hold their stream only until the server's
 * deadline (DEADLINE_EXCEEDED, no client deadline needed) and never block another connection's call; a
 * client pinging too often gets GOAWAY too_many_pings; a connection past its maximum age is replaced
 * under a client that keeps calling, without a failed call. The model is a stand-in (no TensorFlow).
 */

const HEADERS_TIMEOUT = 1000;
const REQUEST_TIMEOUT = 2000;
const CALL_TIMEOUT = 1000;
const MAX_STREAMS = 8;
// Long enough that the deadline test's connection (two deadlines) is not aged out under it.
const MAX_AGE = 3000;
const AGE_GRACE = 500;
let base: string;
let server: ModelServer;

/** Answers each row x with x + 1; one float input "x" of shape [-1, 1]. */
function echoServable(): Servable {
  const spec = (key: string) => ({ key, tensorName: `${key}:0`, dtype: 'float32' as const, shape: [-1, 1] });
  return {
    signature: {
      name: 'serving_default',
      methodName: 'tensorflow/serving/predict',
      inputs: [spec('x')],
      outputs: [spec('y')],
    },
    metadata: {},
    weightBytes: 4,
    execution: { mode: 'graph' },
    run: (inputs) => [{ dtype: 'float32', shape: inputs[0]!.shape, data: inputs[0]!.data.map((v) => v + 1) }],
    dispose() {},
  };
}

beforeAll(async () => {
  base = await tempDir('limits');
  await mkdir(path.join(base, 'echo', '1'), { recursive: true });
  server = await startServer(
    base,
    {
      grpcPort: 0,
      warmup: false,
      requestTimeoutMs: REQUEST_TIMEOUT,
      headersTimeoutMs: HEADERS_TIMEOUT,
      grpcCallTimeoutMs: CALL_TIMEOUT,
      grpcLimits: {
        'grpc.max_concurrent_streams': MAX_STREAMS,
        'grpc.http2.min_recv_ping_interval_without_data_ms': 1000,
        'grpc.http2.max_ping_strikes': 2,
        'grpc.max_connection_age_ms': MAX_AGE,
        'grpc.max_connection_age_grace_ms': AGE_GRACE,
      },
    },
    { loadServable: async () => echoServable() },
  );
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

const PREDICT_BODY = JSON.stringify({ instances: [[1]] });

/** A raw socket that sends `head` at once, then `trickle` a byte every `everyMs`; resolves how it ended. */
function slowClient(head: string, trickle: string, everyMs: number): Promise<{ afterMs: number; reply: string }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(server.restPort!, '127.0.0.1');
    let reply = '';
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < trickle.length && !socket.destroyed) socket.write(trickle[sent++]!);
    }, everyMs);
    socket.on('connect', () => socket.write(head));
    socket.on('data', (chunk) => (reply += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ afterMs: performance.now() - started, reply });
    });
  });
}

describe('REST slow clients', () => {
  it('cuts 200 slow-loris connections at their timeout while a normal client gets prompt answers', async () => {
    const headerTricklers = Array.from({ length: 100 }, () =>
      slowClient(
        'POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\n',
        'X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n',
        100,
      ),
    );
    const bodyTricklers = Array.from({ length: 100 }, () =>
      slowClient(
        'POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${PREDICT_BODY.length + 100}\r\n\r\n`,
        `${PREDICT_BODY}${' '.repeat(100)}`,
        100,
      ),
    );
    // While they trickle, a normal client's requests are answered at once, each.
    const latencies: number[] = [];
    const until = performance.now() + REQUEST_TIMEOUT + 500;
    while (performance.now() < until) {
      const started = performance.now();
      const answer = await request(server.restPort!, 'POST', '/v1/models/echo:predict', { instances: [[41]] });
      latencies.push(performance.now() - started);
      expect(answer.status).toBe(200);
      expect(answer.json).toMatchObject({ predictions: [[42]] });
      await sleep(50);
    }
    expect(latencies.length).toBeGreaterThan(10);
    expect(Math.max(...latencies)).toBeLessThan(HEADERS_TIMEOUT);

    // Each slow client was cut after its timeout (not before), with a 408 or a closed socket, none answered.
    const slack = 1500;
    for (const ended of await Promise.all(headerTricklers)) {
      expect(ended.afterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT - 100);
      expect(ended.afterMs).toBeLessThan(HEADERS_TIMEOUT + slack);
      expect(ended.reply).not.toContain('200 OK');
    }
    for (const ended of await Promise.all(bodyTricklers)) {
      expect(ended.afterMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 100);
      expect(ended.afterMs).toBeLessThan(REQUEST_TIMEOUT + slack);
      expect(ended.reply).not.toContain('200 OK');
    }
  }, 20_000);
});

/** Predict over a client of gRPC's own, no deadline set. */
function grpcPredict(client: ReturnType<typeof predictionServiceClient>, value: number): Promise<number> {
  return new Promise((resolve, reject) =>
    client.Predict(
      {
        model_spec: { name: 'echo' },
        inputs: { x: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: 1 }, { size: 1 }] }, float_val: [value] } },
      },
      (error: grpc.ServiceError | null, response: any) =>
        error ? reject(error) : resolve(response.outputs.y.float_val[0]),
    ),
  );
}

/** Opens a Predict stream on `session` that sends a frame's first bytes and never finishes; resolves its status. */
function stalledCall(session: http2.ClientHttp2Session): Promise<{ status?: string; afterMs: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const stream = session.request({
      ':method': 'POST',
      ':path': '/tensorflow.serving.PredictionService/Predict',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    // A length-prefixed message header announcing 100 bytes, then 3 of them.
    stream.write(Buffer.from([0, 0, 0, 0, 100, 10, 6, 10]));
    let status: string | undefined;
    stream.on('response', (headers) => (status ??= headers['grpc-status'] as string | undefined));
    stream.on('trailers', (trailers) => (status ??= trailers['grpc-status'] as string | undefined));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, afterMs: performance.now() - started }));
    stream.resume();
  });
}

describe('gRPC limits', () => {
  it('ends calls that never finish sending at the server deadline, without blocking other connections', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.grpcPort}`);
    session.on('error', () => {});
    await new Promise((resolve) => session.once('remoteSettings', resolve));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(MAX_STREAMS);
    // Every stream this connection may have, plus two the client must queue until the server frees a slot.
    let endedSoFar = 0;
    const stalled = Array.from({ length: MAX_STREAMS + 2 }, () =>
      stalledCall(session).then((call) => (endedSoFar++, call)),
    );
    const client = predictionServiceClient(server.grpcPort!);
    try {
      // A call on another connection is answered while every stalled stream is still open.
      expect(await grpcPredict(client, 1)).toBe(2);
      expect(endedSoFar).toBe(0);
      const ended = await Promise.all(stalled);
      for (const [i, call] of ended.entries()) {
        expect(call.status, `stalled call ${i}`).toBe(String(grpc.status.DEADLINE_EXCEEDED));
        expect(call.afterMs).toBeGreaterThanOrEqual(CALL_TIMEOUT - 100);
      }
      // The queued two got a slot only when the first ones were ended: about two deadlines in all.
      expect(Math.max(...ended.map((c) => c.afterMs))).toBeGreaterThanOrEqual(2 * CALL_TIMEOUT - 200);
      expect(Math.max(...ended.map((c) => c.afterMs))).toBeLessThan(2 * CALL_TIMEOUT + 1500);
    } finally {
      client.close();
      session.destroy();
    }
  });

  it('sends GOAWAY too_many_pings to a client that pings more often than allowed', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.grpcPort}`);
    session.on('error', () => {});
    const goaway = new Promise<{ code: number; data: string }>((resolve) =>
      session.once('goaway', (code: number, _last: number, data?: Buffer) =>
        resolve({ code, data: data?.toString() ?? '' }),
      ),
    );
    await new Promise((resolve) => session.once('remoteSettings', resolve));
    for (let i = 0; i < 6 && !session.closed && !session.destroyed; i++)
      await new Promise((resolve) => session.ping(() => resolve(undefined)));
    expect(await goaway).toEqual({ code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, data: 'too_many_pings' });
    await new Promise((resolve) => (session.destroyed ? resolve(undefined) : session.once('close', resolve)));
  });

  it('replaces a connection past its maximum age under a client that keeps calling, no call failing', async () => {
    // A TCP relay in front of the server counts the connections the client opens.
    let connections = 0;
    const relay = net.createServer((inbound) => {
      connections++;
      const outbound = net.connect(server.grpcPort!, '127.0.0.1');
      inbound.pipe(outbound).pipe(inbound);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const client = predictionServiceClient((relay.address() as net.AddressInfo).port);
    try {
      // The age has ±10 % jitter; calls go on until a few have gone over the second connection.
      const until = performance.now() + MAX_AGE * 1.1 + AGE_GRACE + 2000;
      let calls = 0;
      let afterReconnect = 0;
      for (; performance.now() < until && afterReconnect < 3; calls++) {
        expect(await grpcPredict(client, calls)).toBe(calls + 1);
        if (connections >= 2) afterReconnect++;
        await sleep(100);
      }
      expect(connections).toBeGreaterThanOrEqual(2);
      expect(afterReconnect).toBe(3);
    } finally {
      client.close();
      relay.close();
    }
  }, 15_000);
});

describe('--grpc-channel-arguments', () => {
  it("reads TF Serving's name=value list; a name the server does not know is refused, naming it", () => {
    const limits = GrpcLimitsSchema.parse(
      parseGrpcChannelArguments('grpc.max_concurrent_streams=10, grpc.max_connection_age_ms=60000'),
    );
    expect(limits['grpc.max_concurrent_streams']).toBe(10);
    expect(limits['grpc.max_connection_age_ms']).toBe(60000);
    expect(limits['grpc.keepalive_timeout_ms']).toBe(20_000);
    expect(() => parseGrpcChannelArguments('grpc.max_concurrent_streams')).toThrow(/name=value/);
    expect(() => parseGrpcChannelArguments('grpc.keepalive_time_ms=-1')).toThrow(/whole number/);
    const unknown = GrpcLimitsSchema.safeParse(parseGrpcChannelArguments('grpc.bogus=1'));
    expect(unknown.success).toBe(false);
    expect(JSON.stringify(unknown.error?.issues)).toContain('grpc.bogus');
  });
});
