import type http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { asServingError, clientMessage, grpcStatusOf } from '../errors';
import { answerStatus, boundHttp2Servers } from './http2';

/**
 * Predict answered straight from the HTTP/2 stream, beneath grpc-js. grpc-js spends most of a small call on its own
 * machinery (call objects, interceptors, metadata copies); a unary Predict needs only its framing: one
 * length-prefixed message in, headers, one message and trailers out. Everything else — other methods, compressed
 * requests, anything not `application/grpc` — is handed to grpc-js's own stream handler unchanged, as are the
 * server's per-call deadline and ping policy (limits.ts), which listen to the same streams.
 */

export const PREDICT_PATH = '/tensorflow.serving.PredictionService/Predict';

/** What the gRPC door hands this module for a server: Predict's codec and handler (server.ts). */
export interface RawPredict {
  deserialize(bytes: Buffer): unknown;
  serialize(value: unknown): Buffer;
  handle(call: grpc.ServerUnaryCall<unknown, unknown>): Promise<{ response: unknown; metadata?: grpc.Metadata }>;
}

export const rawPredictOf = new WeakMap<grpc.Server, RawPredict>();

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => void;

/**
 * Takes Predict calls on every listener `server` has bound (call after bindAsync, before guardGrpcServer adds its
 * own listeners). `maxBytes`: the largest message accepted, as grpc-js's max receive message length.
 */
export function serveRawPredict(server: grpc.Server, maxBytes: number): void {
  const raw = rawPredictOf.get(server);
  if (!raw) return;
  for (const listener of boundHttp2Servers(server, 'Predict beneath grpc-js')) {
    const grpcJs = listener.listeners('stream') as StreamListener[];
    listener.removeAllListeners('stream');
    listener.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
      if (takes(headers)) answer(raw, stream, headers, maxBytes);
      else for (const handle of grpcJs) handle.call(listener, stream, headers, flags);
    });
  }
}

/** A plain unary Predict: the path, gRPC's content type, no compression. */
function takes(headers: http2.IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  const encoding = headers['grpc-encoding'];
  return (
    headers[':path'] === PREDICT_PATH &&
    headers[':method'] === 'POST' &&
    typeof type === 'string' &&
    (type === 'application/grpc' ||
      type.startsWith('application/grpc+proto') ||
      type.startsWith('application/grpc;')) &&
    (encoding === undefined || encoding === 'identity')
  );
}

function answer(raw: RawPredict, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, max: number) {
  const chunks: Buffer[] = [];
  let length = 0;
  let refused = false;
  stream.on('data', (chunk: Buffer) => {
    if (refused) return;
    length += chunk.length;
    if (length > max + 5) {
      refused = true;
      chunks.length = 0;
      answerStatus(
        stream,
        grpc.status.RESOURCE_EXHAUSTED,
        `the request is larger than ${max} bytes (the server's max receive message length)`,
      );
      return;
    }
    chunks.push(chunk);
  });
  stream.on('error', () => {}); // a reset by the client; the stream closes and nothing more is written
  stream.on('end', () => {
    if (refused || stream.destroyed || stream.closed) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
    if (body.length >= 5 && body[0] !== 0) {
      answerStatus(stream, grpc.status.UNIMPLEMENTED, 'a compressed message without grpc-encoding');
      return;
    }
    if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) {
      answerStatus(stream, grpc.status.INTERNAL, 'the request is not one length-prefixed gRPC message');
      return;
    }
    const call = {
      request: raw.deserialize(body.subarray(5)),
      metadata: grpc.Metadata.fromHttp2Headers(headers),
    } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
    raw.handle(call).then(
      ({ response, metadata }) => {
        if (stream.destroyed || stream.closed) return;
        const message = raw.serialize(response);
        const framed = Buffer.allocUnsafe(5 + message.length);
        framed[0] = 0;
        framed.writeUInt32BE(message.length, 1);
        message.copy(framed, 5);
        const trailers: http2.OutgoingHttpHeaders = { 'grpc-status': '0', 'grpc-message': 'OK' };
        for (const [key, value] of Object.entries(metadata?.getMap() ?? {})) trailers[key] = String(value);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers(trailers));
        stream.end(framed);
      },
      (error: unknown) => {
        const failure = asServingError(error);
        answerStatus(stream, grpcStatusOf(failure.code), clientMessage(failure.message));
      },
    );
  });
}
