import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { Admin, parseBody, parseModelName } from '../admin';
import type { BackendReport } from '../../training/backend';
import { metadataTarget, signatureDefMap, statusMessage, versionStatus } from '../describe';
import { asServingError, httpStatusOf, invalidArgument, ServingError } from '../errors';
import { FeedbackBodySchema, type FeedbackStore } from '../feedback';
import { decodePredictInputs, encodeTensorProto } from '../grpc/tensor-proto';
import { readPredictRequest, wireInputs, writePredictResponse } from '../grpc/predict-wire';
import { loadServingProtos } from '../grpc/protos';
import type { CallContext, Inference } from '../inference';
import type { VersionManager } from '../manager';
import type { ServingMetrics } from '../metrics';
import type { Router } from '../router';
import { rowSize, type Signature } from '../signature';
import type { ServingState } from '../state';
import { describePolicy } from '../version-policy';
import {
  fromBytes,
  parsePredictBody,
  PredictBodySchema,
  toColumnar,
  toPredictions,
  type DenseTensor,
} from '../tensors';
import { scanDensePredictBody, type DenseJsonBody } from './dense-json';
import { parseModelPath, type ModelPath } from './paths';

/**
 * The REST front door: TF Serving's paths and JSON shapes, errors as {"error": "…"} with TF
 * Serving's status mapping, plus Gantry's list, health, feedback, metrics and admin endpoints.
 * It only translates: every predict goes through Inference.
 */

export interface RestDeps {
  inference: Inference;
  manager: VersionManager;
  router: Router;
  state: ServingState;
  admin: Admin;
  feedback: FeedbackStore;
  metrics: ServingMetrics;
  backend: BackendReport;
  bodyLimitBytes: number;
  requestTimeoutMs: number;
  stickyHeader: string;
  logLevel: string;
  ready(): { ready: boolean; reasons: string[] };
}

const PROTOBUF = 'application/x-protobuf';
const VERSION_HEADER = 'x-gantry-model-version';
const REQUEST_ID_HEADER = 'x-request-id';

const ClassifyBodySchema = z
  .object({
    signature_name: z.string().optional(),
    context: z.record(z.string(), z.unknown()).optional(),
    examples: z.array(z.record(z.string(), z.unknown())).min(1),
  })
  .loose();

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function sendError(reply: FastifyReply, error: ServingError): FastifyReply {
  return reply.code(httpStatusOf(error.code)).send({ error: error.message });
}

/** One example's value for one input: a flat list (tf.Example style) or the row's nested shape. */
function exampleRows(
  examples: Record<string, unknown>[],
  context: Record<string, unknown> | undefined,
  signature: Signature,
  maxRows: number,
): DenseTensor[] {
  if (examples.length > maxRows)
    throw invalidArgument(`examples: ${examples.length} examples exceed the limit of ${maxRows} per request`);
  const instances = examples.map((example, i) => {
    const merged = { ...context, ...example };
    return Object.fromEntries(
      Object.entries(merged).map(([key, value]) => {
        const spec = signature.inputs.find((s) => s.key === key);
        if (!spec)
          throw invalidArgument(
            `examples[${i}]: unknown feature "${key}"; the signature's inputs are ${signature.inputs.map((s) => `"${s.key}"`).join(', ')}`,
          );
        const flat =
          Array.isArray(value) &&
          value.length === rowSize(spec) &&
          spec.shape.length > 2 &&
          typeof value[0] === 'number';
        return [key, flat ? reshape(value as number[], spec.shape.slice(1)) : value];
      }),
    );
  });
  return parsePredictBody({ instances }, signature, maxRows).inputs;
}

function reshape(flat: number[], dims: number[]): unknown {
  if (dims.length === 1) return flat;
  const stride = dims.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: dims[0]! }, (_, i) => reshape(flat.slice(i * stride, (i + 1) * stride), dims.slice(1)));
}

/** A JSON :predict body, kept as bytes for the dense fast path. */
class JsonText {
  constructor(readonly bytes: Buffer) {}
}

function isPredictUrl(url: string): boolean {
  const query = url.indexOf('?');
  const path = query < 0 ? url : url.slice(0, query);
  return path.startsWith('/v1/models/') && path.endsWith(':predict');
}

/** The fast path's tensor as the signature's single float32 input, or undefined when it does not fit. */
function denseInputs(body: DenseJsonBody, signature: Signature, maxRows: number): DenseTensor[] | undefined {
  if (signature.inputs.length !== 1) return undefined;
  const spec = signature.inputs[0]!;
  if (spec.dtype !== 'float32') return undefined;
  const { dims } = body;
  if (dims.length !== spec.shape.length || spec.shape.some((d, i) => i > 0 && dims[i] !== d)) return undefined;
  const rows = dims[0]!;
  if (rows < 1 || rows > maxRows) return undefined;
  return [{ dtype: 'float32', shape: dims, data: body.data }];
}

export async function createRestServer(deps: RestDeps): Promise<FastifyInstance> {
  const { inference, manager, router, state, admin, feedback, metrics } = deps;
  const app = Fastify({
    logger: deps.logLevel === 'silent' ? false : { level: deps.logLevel },
    // A line per request would cost more than the request; metrics count them instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimitBytes,
    // Receiving the whole request may take at most the request timeout (slow-loris bound).
    requestTimeout: deps.requestTimeoutMs,
    forceCloseConnections: true,
    return503OnClosing: true,
  });
  const protos = loadServingProtos();

  // Binary bodies: a serialized PredictRequest (application/x-protobuf) or raw tensor bytes.
  app.addContentTypeParser([PROTOBUF, 'application/octet-stream'], { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );
  // A JSON :predict body stays text until the handler: the dense fast path (dense-json.ts) reads
  // it straight into a tensor; anything else is parsed by fastify's own JSON parser, as before.
  const parseJsonBody = app.getDefaultJsonParser('error', 'error');
  const parseJson = (text: string): unknown => {
    let result: { error?: Error; value?: unknown } = {};
    parseJsonBody(undefined as never, text, (error, value) => (result = { error: error ?? undefined, value }));
    if (result.error) throw result.error;
    return result.value;
  };
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    if (request.method === 'POST' && isPredictUrl(request.url)) return done(null, new JsonText(body as Buffer));
    parseJsonBody(request, (body as Buffer).toString('utf8'), done);
  });
  // TF Serving reads JSON whatever the Content-Type says (curl -d sends form encoding).
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      done(invalidArgument(`the body is not JSON: ${(error as Error).message}`), undefined);
    }
  });

  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof ServingError) return sendError(reply, error);
    const fastifyError = error as { statusCode?: number; message: string };
    if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      return reply.code(fastifyError.statusCode).send({ error: fastifyError.message });
    }
    app.log.error(error);
    return sendError(reply, asServingError(error));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: `Malformed request: ${request.method} ${request.url.split('?')[0]}` }),
  );

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const { ready, reasons } = deps.ready();
    return reply.code(ready ? 200 : 503).send({ ready, reasons });
  });

  const metricsRoute = async (_request: FastifyRequest, reply: FastifyReply) =>
    reply.type(metrics.contentType).send(await metrics.text());
  app.get('/monitoring/prometheus/metrics', metricsRoute);
  app.get('/metrics', metricsRoute);
  // The same metrics as data, for the rollout's monitor (serving/metrics-snapshot.ts reads them).
  app.get('/monitoring/metrics.json', async () => metrics.json());

  app.get('/v1/models', async () => ({
    backend: { name: deps.backend.name, engine: deps.backend.engineBackend, tfjs: deps.backend.tfjsVersion },
    models: manager.modelNames().map((name) => {
      const config = manager.config(name)!;
      return {
        name,
        base_path: config.base_path,
        version_policy: describePolicy(config.model_version_policy),
        version_labels: config.version_labels,
        traffic: state.traffic(name) ?? null,
        ...statusMessage(manager.status(name)),
      };
    }),
  }));

  app.get('/v1/models/*', async (request) => {
    const path = parseModelPath((request.params as { '*': string })['*']);
    if (path.verb) throw new ServingError('NOT_FOUND', `Malformed request: ":${path.verb}" takes POST`);
    const context: CallContext = { api: path.metadata ? 'metadata' : 'status', protocol: 'rest' };
    try {
      if (path.metadata) {
        const { version, signature } = metadataTarget(manager, router, path.model, path);
        return {
          model_spec: { name: path.model, signature_name: '', version: String(version) },
          metadata: { signature_def: signatureDefMap(signature) },
        };
      }
      return statusMessage(versionStatus(manager, router, path.model, path));
    } catch (error) {
      inference.count(path.model, '', context, asServingError(error));
      throw error;
    }
  });

  app.post('/v1/models/*', async (request, reply) => {
    const path: ModelPath = parseModelPath((request.params as { '*': string })['*']);
    if (path.metadata || !path.verb)
      throw new ServingError('NOT_FOUND', 'Malformed request: POST needs :predict, :classify or :feedback');
    if (path.verb === 'feedback') {
      const body = parseBody(FeedbackBodySchema, request.body, 'body');
      if (!manager.hasModel(path.model))
        throw new ServingError('NOT_FOUND', `model "${path.model}" is not served here`);
      return feedback.record(path.model, body);
    }
    if (path.verb === 'regress')
      throw new ServingError(
        'UNIMPLEMENTED',
        'regress is not served: a layers model has no regression signature; use :predict',
      );
    const context: CallContext = {
      api: path.verb,
      protocol: 'rest',
      clientKey: header(request, deps.stickyHeader),
      requestId: header(request, REQUEST_ID_HEADER),
    };
    let dense: DenseJsonBody | undefined;
    if (request.body instanceof JsonText) {
      const bytes = request.body.bytes;
      dense = path.verb === 'predict' ? scanDensePredictBody(bytes) : undefined;
      const text = () => bytes.toString('utf8');
      request.body = dense ? undefined : parseJson(text());
      if (dense) {
        // The general decoder still answers what the fast path cannot (a shape that does not
        // fit the signature: its error names the element), from the same text.
        const fast = dense;
        const general = (signature: Signature) =>
          parsePredictBody(parseBody(PredictBodySchema, parseJson(text()), 'body'), signature, inference.maxRows)
            .inputs;
        const target = {
          model: path.model,
          version: path.version,
          label: path.label,
          signatureName: fast.signatureName,
        };
        const answer = await inference.run(
          target,
          context,
          (signature) => denseInputs(fast, signature, inference.maxRows) ?? general(signature),
        );
        reply.header(VERSION_HEADER, String(answer.version)).header(REQUEST_ID_HEADER, answer.requestId);
        const keys = answer.signature.outputs.map((s) => s.key);
        return fast.format === 'row'
          ? {
              predictions: toPredictions(answer.outputs, keys),
              model_version: String(answer.version),
              request_id: answer.requestId,
            }
          : {
              outputs: toColumnar(answer.outputs, keys),
              model_version: String(answer.version),
              request_id: answer.requestId,
            };
      }
    }
    const binary = Buffer.isBuffer(request.body);
    if (binary && path.verb !== 'predict') throw invalidArgument('binary bodies are accepted by :predict only');
    let target = {
      model: path.model,
      version: path.version,
      label: path.label,
      signatureName: undefined as string | undefined,
    };
    let decode: (signature: Signature) => DenseTensor[];
    let format: 'row' | 'columnar' | 'classify' | 'binary' = 'classify';
    if (binary) {
      format = 'binary';
      decode = binaryDecoder(request, request.body as Buffer);
    } else if (path.verb === 'predict') {
      const body = parseBody(PredictBodySchema, request.body, 'body');
      target.signatureName = body.signature_name;
      format = body.instances !== undefined ? 'row' : 'columnar';
      decode = (signature) => parsePredictBody(body, signature, inference.maxRows).inputs;
    } else {
      const body = parseBody(ClassifyBodySchema, request.body, 'body');
      target.signatureName = body.signature_name;
      decode = (signature) => {
        if (!signature.classLabels)
          throw invalidArgument(
            `model "${path.model}" is not a classifier (one output of shape [-1, K]); use :predict`,
          );
        return exampleRows(body.examples, body.context, signature, inference.maxRows);
      };
    }
    target = { ...target };
    const answer = await inference.run(target, context, decode);
    reply.header(VERSION_HEADER, String(answer.version)).header(REQUEST_ID_HEADER, answer.requestId);
    const keys = answer.signature.outputs.map((s) => s.key);
    switch (format) {
      case 'row':
        return {
          predictions: toPredictions(answer.outputs, keys),
          model_version: String(answer.version),
          request_id: answer.requestId,
        };
      case 'columnar':
        return {
          outputs: toColumnar(answer.outputs, keys),
          model_version: String(answer.version),
          request_id: answer.requestId,
        };
      case 'binary': {
        if ((request.headers.accept ?? '').includes(PROTOBUF)) {
          const fast = writePredictResponse(
            answer.model,
            answer.version,
            undefined,
            answer.outputs.map((tensor, i) => ({ key: keys[i]!, tensor })),
          );
          const outputs = fast
            ? undefined
            : Object.fromEntries(answer.outputs.map((t, i) => [keys[i]!, encodeTensorProto(t)]));
          return reply.type(PROTOBUF).send(
            fast ??
              protos.encodePredictResponse({
                model_spec: { name: answer.model, version: { value: String(answer.version) } },
                outputs,
              }),
          );
        }
        return {
          outputs: toColumnar(answer.outputs, keys),
          model_version: String(answer.version),
          request_id: answer.requestId,
        };
      }
      case 'classify': {
        const labels = answer.signature.classLabels!;
        const scores = answer.outputs[0]!;
        const k = labels.length;
        const results = Array.from({ length: scores.shape[0]! }, (_, r) =>
          labels.map((label, c) => [label, scores.data[r * k + c]!]),
        );
        return { results, model_version: String(answer.version), request_id: answer.requestId };
      }
    }
  });

  /**
   * A binary predict body: a serialized TF Serving PredictRequest (application/x-protobuf; the
   * URL names the model, the request's inputs are used), or with application/octet-stream the
   * raw little-endian tensor of the model's single input, its row count given by the size.
   */
  function binaryDecoder(request: FastifyRequest, bytes: Buffer): (signature: Signature) => DenseTensor[] {
    const isProto = (request.headers['content-type'] ?? '').startsWith(PROTOBUF);
    if (isProto) {
      // The dense fast path (grpc/predict-wire.ts) first; the general decoder for anything else.
      const wire = readPredictRequest(bytes);
      const general = (): ((signature: Signature) => DenseTensor[]) => {
        let decoded: { inputs?: Record<string, unknown> };
        try {
          decoded = protos.decodePredictRequest(bytes) as typeof decoded;
        } catch (error) {
          throw invalidArgument(`the body is not a PredictRequest: ${(error as Error).message}`);
        }
        return (signature) => decodePredictInputs(decoded.inputs ?? {}, signature, inference.maxRows);
      };
      if (!wire) return general();
      // The URL names the model and REST has no output filter: only the inputs are read (a body
      // with an output_filter takes the general path, as it did before the fast path existed).
      return (signature) =>
        (wire.outputFilter.length === 0 ? wireInputs(wire, signature, inference.maxRows) : undefined) ??
        general()(signature);
    }
    return (signature) => {
      if (signature.inputs.length !== 1)
        throw invalidArgument('a raw tensor body needs a model with one input; send a PredictRequest instead');
      const spec = signature.inputs[0]!;
      const rows = bytes.byteLength / (rowSize(spec) * 4);
      if (!Number.isInteger(rows) || rows < 1)
        throw invalidArgument(
          `body: ${bytes.byteLength} bytes is not a whole number of rows of ${rowSize(spec)} ${spec.dtype} values`,
        );
      if (rows > inference.maxRows)
        throw invalidArgument(`body: ${rows} rows exceed the limit of ${inference.maxRows} per request`);
      return [
        {
          dtype: spec.dtype,
          shape: [rows, ...spec.shape.slice(1)],
          data: fromBytes(bytes, spec.dtype, rows * rowSize(spec), 'body'),
        },
      ];
    };
  }

  // ---- admin API: every route checks the bearer token first ----
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request) => admin.authorize(header(request, 'authorization')));
    const name = (request: FastifyRequest) => parseModelName((request.params as { name: string }).name);
    scope.get('/v1/admin/state', async () => ({
      state: state.snapshot(),
      models: manager.modelNames().map((m) => ({ name: m, ...statusMessage(manager.status(m)) })),
    }));
    scope.put('/v1/admin/models/:name', async (request) => {
      const model = name(request);
      const config = await admin.putModel(model, request.body ?? {});
      return { config, ...statusMessage(manager.status(model)) };
    });
    scope.delete('/v1/admin/models/:name', async (request) => {
      await admin.removeModel(name(request));
      return { removed: true };
    });
    scope.post('/v1/admin/models/:name/reload', async (request) => {
      const model = name(request);
      await admin.reloadModel(model);
      return statusMessage(manager.status(model));
    });
    scope.put('/v1/admin/models/:name/labels/:label', async (request) => {
      const model = name(request);
      await admin.setLabel(model, (request.params as { label: string }).label, request.body);
      return { version_labels: manager.config(model)?.version_labels ?? {} };
    });
    scope.delete('/v1/admin/models/:name/labels/:label', async (request) => {
      const model = name(request);
      await admin.deleteLabel(model, (request.params as { label: string }).label);
      return { version_labels: manager.config(model)?.version_labels ?? {} };
    });
    scope.put('/v1/admin/models/:name/traffic', async (request) => ({
      traffic: await admin.setTraffic(name(request), request.body),
    }));
    scope.delete('/v1/admin/models/:name/traffic', async (request) => {
      await admin.clearTraffic(name(request));
      return { traffic: null };
    });
  });

  return app;
}
