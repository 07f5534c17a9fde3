import type { FastifyInstance } from 'fastify';
import { fastifyPlugin } from 'fastify-plugin';
import { invalidArgument } from '../errors';
import { PROTOBUF } from './headers';

/**
 * How the REST door reads request bodies, for every route (a plugin that is not encapsulated):
 * binary bodies as bytes, a JSON :predict body as bytes for the dense fast path (dense-json.ts),
 * other JSON with fastify's own parser, and anything else as JSON whatever its Content-Type says.
 */

/** A JSON :predict body, kept as bytes for the dense fast path. */
export class JsonText {
  constructor(readonly bytes: Buffer) {}
}

function isPredictUrl(url: string): boolean {
  const query = url.indexOf('?');
  const path = query < 0 ? url : url.slice(0, query);
  return path.startsWith('/v1/models/') && path.endsWith(':predict');
}

/** Fastify's own JSON parser as a function of text (it throws what it would have answered with). */
export function jsonParser(app: FastifyInstance): (text: string) => unknown {
  const parseJsonBody = app.getDefaultJsonParser('error', 'error');
  return (text) => {
    let result: { error?: Error; value?: unknown } = {};
    parseJsonBody(undefined as never, text, (error, value) => (result = { error: error ?? undefined, value }));
    if (result.error) throw result.error;
    return result.value;
  };
}

export const bodyParsers = fastifyPlugin(async (app: FastifyInstance) => {
  // Binary bodies: a serialized PredictRequest (application/x-protobuf) or raw tensor bytes.
  app.addContentTypeParser([PROTOBUF, 'application/octet-stream'], { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );
  // A JSON :predict body stays text until the handler: the dense fast path (dense-json.ts) reads
  // it straight into a tensor; anything else is parsed by fastify's own JSON parser, as before.
  const parseJsonBody = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    if (request.method === 'POST' && isPredictUrl(request.url)) return done(null, new JsonText(body as Buffer));
    parseJsonBody(request, (body as Buffer).toString('utf8'), done);
  });
  // TF Serving reads JSON whatever the Content-Type says (curl -d sends form encoding, fetch with a string body
  // text/plain): fastify's own text/plain parser would hand the handler a string.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      done(invalidArgument(`the body is not JSON: ${(error as Error).message}`), undefined);
    }
  });
});
