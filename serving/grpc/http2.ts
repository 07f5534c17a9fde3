import type http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

/**
 * What Gantry does beneath grpc-js, on the HTTP/2 layer it serves gRPC over: find the HTTP/2 servers grpc-js bound,
 * and answer a stream with a status alone. The call deadline and ping policy (limits.ts) and Predict beneath grpc-js
 * (raw-predict.ts) both work there.
 */

/**
 * The HTTP/2 servers `server` has bound (call after bindAsync). grpc-js keeps them in a private map: when an upgrade
 * renames it this throws at startup, naming what needed it, rather than serving without it.
 */
export function boundHttp2Servers(server: grpc.Server, purpose: string): http2.Http2Server[] {
  const listeners = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map) || listeners.size === 0)
    throw new Error(`gRPC ${purpose}: this @grpc/grpc-js keeps no http2Servers map`);
  return [...(listeners.keys() as Iterable<http2.Http2Server>)];
}

/** A trailers-only answer: status and message in the stream's one header block, as gRPC allows for an error. */
export function answerStatus(stream: http2.ServerHttp2Stream, code: grpc.status, message: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(code),
      'grpc-message': percentEncoded(message),
    },
    { endStream: true },
  );
}

/** gRPC's percent-encoding of grpc-message: bytes outside printable ASCII, and '%', as %XX of their UTF-8. */
function percentEncoded(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8'))
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}
