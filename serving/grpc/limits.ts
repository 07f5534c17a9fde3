import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import type { GrpcLimits } from '../config';
import { answerStatus, boundHttp2Servers } from './http2';

/**
 * The gRPC door's connection limits. grpc-js enforces streams per connection, keepalive, idle and
 * maximum age itself (grpcServerOptions). Two things gRPC core does and grpc-js does not are added
 * on each listener's HTTP/2 sessions (guardGrpcServer): the ping policy (a client pinging more
 * often than allowed gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as gRPC core answers) and a
 * server-side deadline per call, counted from the call's first frame, so a call whose client never
 * finishes sending (or set no deadline) still ends and frees its stream.
 */

export function grpcServerOptions(limits: GrpcLimits, maxReceiveBytes: number): grpc.ServerOptions {
  return {
    'grpc.max_receive_message_length': maxReceiveBytes,
    'grpc.max_concurrent_streams': limits['grpc.max_concurrent_streams'],
    'grpc.keepalive_time_ms': limits['grpc.keepalive_time_ms'],
    'grpc.keepalive_timeout_ms': limits['grpc.keepalive_timeout_ms'],
    'grpc.max_connection_idle_ms': limits['grpc.max_connection_idle_ms'],
    'grpc.max_connection_age_ms': limits['grpc.max_connection_age_ms'],
    'grpc.max_connection_age_grace_ms': limits['grpc.max_connection_age_grace_ms'],
  };
}

const TOO_MANY_PINGS = Buffer.from('too_many_pings');

/**
 * Adds the ping policy and the call deadline to every listener `server` has bound (call after bindAsync; it throws
 * at startup rather than serving without them if grpc-js no longer shows its listeners: http2.ts).
 * test/serving/limits.test.ts shows both working.
 */
export function guardGrpcServer(server: grpc.Server, limits: GrpcLimits, callTimeoutMs: number): void {
  for (const listener of boundHttp2Servers(server, 'limits (the ping policy and call deadline)')) {
    listener.on('session', (session: http2.ServerHttp2Session) => pingPolicy(session, limits));
    listener.on('stream', (stream: http2.ServerHttp2Stream) => callDeadline(stream, callTimeoutMs));
  }
}

/**
 * gRPC core's policy: a ping that comes sooner than the minimum interval after the previous one is a
 * strike, a call started clears them (it is what the pings keep alive), and one strike past the maximum
 * closes the connection.
 */
function pingPolicy(session: http2.ServerHttp2Session, limits: GrpcLimits): void {
  const interval = limits['grpc.http2.min_recv_ping_interval_without_data_ms'];
  const maxStrikes = limits['grpc.http2.max_ping_strikes'];
  let last = Number.NEGATIVE_INFINITY;
  let strikes = 0;
  session.on('stream', () => {
    strikes = 0;
  });
  session.on('ping', () => {
    const now = performance.now();
    if (now - last < interval && ++strikes > maxStrikes && !session.closed) {
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, TOO_MANY_PINGS);
      session.close();
      // Calls in flight have a moment to finish; a client that keeps pinging does not hold the socket open.
      setTimeout(() => session.destroy(), 1000).unref();
    }
    last = now;
  });
}

function callDeadline(stream: http2.ServerHttp2Stream, timeoutMs: number): void {
  const timer = setTimeout(() => {
    if (stream.closed || stream.destroyed) return;
    // Headers already out means the answer is being written; it is cut (CANCEL) rather than given a status.
    const answered = !stream.headersSent;
    if (answered)
      answerStatus(stream, grpc.status.DEADLINE_EXCEEDED, `the server's deadline of ${timeoutMs} ms per call passed`);
    // RST_STREAM frees the stream's slot even while the client has not finished sending (NO_ERROR once the
    // status went out, as HTTP/2 allows a server that needs no more of the request).
    stream.close(answered ? http2.constants.NGHTTP2_NO_ERROR : http2.constants.NGHTTP2_CANCEL);
  }, timeoutMs);
  stream.once('close', () => clearTimeout(timer));
}
