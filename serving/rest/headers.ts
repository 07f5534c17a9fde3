import type { FastifyRequest } from 'fastify';

/** The HTTP names the REST door shares between its plugins, the gRPC door's metadata and the serving client. */

export const PROTOBUF = 'application/x-protobuf';
/** Every model call's answer names the version that answered… */
export const VERSION_HEADER = 'x-gantry-model-version';
/** …and its request id, always the server's own: the id to send feedback for. */
export const REQUEST_ID_HEADER = 'x-request-id';
/** A caller's own x-request-id, echoed back beside the server's for its tracing (never a feedback key). */
export const CLIENT_REQUEST_ID_HEADER = 'x-client-request-id';
/** The key a traffic split is sticky on, unless the server is configured with another (`stickyHeader`). */
export const CLIENT_KEY_HEADER = 'x-gantry-client-key';

/** A request header's value (the first, when it was sent more than once). */
export function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
