import type { FastifyPluginAsync } from 'fastify';
import { parseBody } from '../admin';
import { invalidArgument, ServingError } from '../errors';
import { FeedbackBodySchema, type FeedbackStore } from '../feedback';
import { ANONYMOUS_CLIENT, type FeedbackAuth, type FeedbackCaller } from '../feedback-auth';
import { loadServingProtos } from '../grpc/protos';
import type { CallContext, Inference, Target } from '../inference';
import type { VersionManager } from '../manager';
import { rowSize, type Signature } from '../signature';
import { parsePredictBody, PredictBodySchema, type DenseTensor } from '../tensors';
import { binaryInputs, sendProtobufAnswer } from './binary';
import { JsonText, jsonParser } from './bodies';
import { ClassifyBodySchema, classifyInputs } from './classify-body';
import { scanDensePredictBody, type DenseJsonBody } from './dense-json';
import { header, PROTOBUF, REQUEST_ID_HEADER } from './headers';
import { decodeImages, imagesFromColumns, imagesFromInstances } from '../images';
import { isRecordRequest, recordsFromColumns, recordsFromInstances } from '../records';
import { parseModelPath, type ModelPath } from './paths';
import { answerReply, type ReplyFormat } from './predict-reply';

export interface PredictRoutesOptions {
  inference: Inference;
  manager: VersionManager;
  feedback: FeedbackStore;
  /** Who may send :feedback; absent = anyone. */
  feedbackAuth?: FeedbackAuth;
  /** The header whose value keeps a client on one version while a traffic split stands. */
  stickyHeader: string;
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

/**
 * Refuses a dense body that carries more than any request to this signature may (more rows than the limit, or more
 * values than the limit's rows of the single input hold) before the general path reparses it: reparsing millions of
 * scalars builds arrays worth tens of MB only to refuse them. Smaller bodies take the general path, whose errors
 * name the element.
 */
function refuseOversized(body: DenseJsonBody, signature: Signature, maxRows: number): void {
  const where = body.format === 'row' ? 'instances' : 'inputs';
  const rows = body.dims[0]!;
  if (rows > maxRows)
    throw invalidArgument(
      body.format === 'row'
        ? `instances: ${rows} instances exceed the limit of ${maxRows} per request`
        : `inputs: ${rows} rows exceed the limit of ${maxRows} per request`,
    );
  // Image and record versions read their bodies their own way (encoded images, records): only plain tensors here.
  const plain = signature.inputs.length === 1 && !signature.images && !signature.records;
  const spec = plain ? signature.inputs[0]! : undefined;
  if (spec && !spec.tfDType && body.data.length > maxRows * rowSize(spec))
    throw invalidArgument(
      `${where}: ${body.data.length} values of shape [${body.dims.join(', ')}], more than the signature's ` +
        `[${spec.shape.join(', ')}] holds in ${maxRows} rows`,
    );
}

/**
 * The model calls, `POST /v1/models/NAME[/versions/N|/labels/L]:VERB`: :predict (JSON row or
 * columnar, its dense fast path, binary bodies), :classify, :feedback, and :regress (a SavedModel's regression
 * signature; refused for other models). Each
 * body is checked by its own schema; every predict and classify goes through Inference.
 */
export const predictRoutes: FastifyPluginAsync<PredictRoutesOptions> = async (app, options) => {
  const { inference, manager, feedback, stickyHeader } = options;
  const protos = loadServingProtos();
  const parseJson = jsonParser(app);

  app.post('/v1/models/*', async (request, reply) => {
    const path: ModelPath = parseModelPath((request.params as { '*': string })['*']);
    if (path.metadata || !path.verb)
      throw new ServingError('NOT_FOUND', 'Malformed request: POST needs :predict, :classify, :regress or :feedback');
    if (path.verb === 'feedback') {
      if (!manager.hasModel(path.model))
        throw new ServingError('NOT_FOUND', `model "${path.model}" is not served here`);
      // The credential first: a caller without one learns nothing from how its body is judged.
      let caller: FeedbackCaller = { client: ANONYMOUS_CLIENT, trusted: false };
      if (options.feedbackAuth) {
        try {
          caller = options.feedbackAuth.check(header(request, 'authorization'));
        } catch (error) {
          feedback.refused(path.model, request.body, ANONYMOUS_CLIENT);
          throw error;
        }
      }
      const body = parseBody(FeedbackBodySchema, request.body, 'body');
      return feedback.record(path.model, body, caller);
    }
    const context: CallContext = {
      api: path.verb,
      protocol: 'rest',
      clientKey: header(request, stickyHeader),
      requestId: header(request, REQUEST_ID_HEADER),
    };
    if (request.body instanceof JsonText) {
      const bytes = request.body.bytes;
      const dense = path.verb === 'predict' ? scanDensePredictBody(bytes) : undefined;
      const text = () => bytes.toString('utf8');
      request.body = dense ? undefined : parseJson(text());
      if (dense) {
        // The general decoder still answers what the fast path cannot (a shape that does not
        // fit the signature: its error names the element), from the same text.
        const general = (signature: Signature) =>
          parsePredictBody(parseBody(PredictBodySchema, parseJson(text()), 'body'), signature, inference.maxRows)
            .inputs;
        const target: Target = {
          model: path.model,
          version: path.version,
          label: path.label,
          signatureName: dense.signatureName,
        };
        const answer = await inference.run(
          target,
          context,
          (signature) =>
            denseInputs(dense, signature, inference.maxRows) ??
            (refuseOversized(dense, signature, inference.maxRows), general(signature)),
        );
        return answerReply(reply, answer, dense.format);
      }
    }
    const binary = Buffer.isBuffer(request.body);
    if (binary && path.verb !== 'predict') throw invalidArgument('binary bodies are accepted by :predict only');
    const target: Target = { model: path.model, version: path.version, label: path.label, signatureName: undefined };
    let decode: (signature: Signature) => DenseTensor[] | Promise<DenseTensor[]>;
    let format: ReplyFormat | 'binary' = 'classify';
    if (binary) {
      format = 'binary';
      decode = binaryInputs(request.headers['content-type'] ?? '', request.body as Buffer, protos, inference.maxRows);
    } else if (path.verb === 'predict') {
      const body = parseBody(PredictBodySchema, request.body, 'body');
      target.signatureName = body.signature_name;
      format = body.instances !== undefined ? 'row' : 'columnar';
      decode = (signature) => {
        if (signature.images) {
          // Encoded images (the version has an image preprocessing.json): decoded as the ingest decoded them.
          const { images } = signature;
          const limits = inference.imageLimits;
          const encoded =
            body.instances !== undefined
              ? imagesFromInstances(body.instances, images, limits, inference.maxRows)
              : imagesFromColumns(body.inputs, images, limits, inference.maxRows);
          if (encoded) {
            format = body.instances !== undefined ? 'records-row' : 'records-columnar';
            return decodeImages(encoded, images, limits);
          }
        }
        if (!signature.records || !isRecordRequest(body.instances ?? body.inputs, signature))
          return parsePredictBody(body, signature, inference.maxRows).inputs;
        // Raw records (the version has a tabular preprocessing.json): encoded as at training time.
        const encoded =
          body.instances !== undefined
            ? recordsFromInstances(body.instances, signature.records, inference.maxRows)
            : recordsFromColumns(body.inputs, signature.records, inference.maxRows);
        inference.countOutOfVocabulary(path.model, encoded.outOfVocabulary);
        format = body.instances !== undefined ? 'records-row' : 'records-columnar';
        return encoded.inputs;
      };
    } else {
      const body = parseBody(ClassifyBodySchema, request.body, 'body');
      target.signatureName = body.signature_name;
      decode = classifyInputs(body, path.model, inference.maxRows, path.verb);
      format = path.verb;
    }
    const answer = await inference.run(target, context, decode);
    if (format !== 'binary') return answerReply(reply, answer, format);
    // A binary body is answered in protobuf when the caller accepts it, else as columnar JSON.
    if ((request.headers.accept ?? '').includes(PROTOBUF)) return sendProtobufAnswer(reply, answer, protos);
    return answerReply(reply, answer, 'columnar');
  });
};
