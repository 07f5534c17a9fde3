import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';
import type { Admin } from '../admin';
import { GrpcLimitsSchema, ModelServerConfigSchema, type GrpcLimits } from '../config';
import { metadataTarget, signatureDefMap, statusMessage, versionStatus } from '../describe';
import { describeIssues } from '../../validation/issues';
import { asServingError, clientMessage, grpcStatusOf, invalidArgument, ServingError } from '../errors';
import { type Answer, type CallContext, type Inference, type Target } from '../inference';
import type { VersionManager } from '../manager';
import type { Api } from '../metrics';
import { decodeImages } from '../images';
import { recordOutputNames } from '../records';
import { checkLabel, checkModelName, quoted } from '../names';
import type { Router } from '../router';
import { examplesTensor, exampleOutputs, type FeatureMessage, MAX_FEATURES, messageFeature } from '../examples';
import { CLASSIFY_METHOD, REGRESS_METHOD, rowSize, type Signature, takesExamples } from '../signature';
import { allocate, type DenseTensor } from '../tensors';
import { loadServingProtos, SIGNATURE_DEF_MAP_TYPE_URL } from './protos';
import { readPredictRequest, WirePredictRequest, wireInputs, writePredictResponse } from './predict-wire';
import { imagesFromTensors } from './image-tensors';
import { recordOutputTensors, recordsFromTensors } from './record-tensors';
import { grpcServerOptions } from './limits';
import { rawPredictOf } from './raw-predict';
import { prescanPredictRequest, RefusedRequest, requestLimits, signatureLimits } from './prescan';
import { decodePredictInputs, encodeTensorProto } from './tensor-proto';
import { REQUEST_ID_HEADER, VERSION_HEADER } from '../rest/headers';

/**
 * The gRPC front door, wire-compatible with TF Serving: tensorflow.serving.PredictionService
 * (Predict, Classify, Regress, GetModelMetadata) and ModelService (GetModelStatus,
 * HandleReloadConfigRequest). Like the REST door it only translates; errors carry the canonical
 * status code. HandleReloadConfigRequest changes what is served, so it needs the admin token
 * in the `authorization` metadata, as the REST admin API does, and while the admin plane listens
 * apart it is served there only (createAdminGrpcServer), not on the public port.
 */

export interface GrpcDeps {
  inference: Inference;
  manager: VersionManager;
  router: Router;
  admin: Admin;
  bodyLimitBytes: number;
  stickyHeader: string;
  /** Connection limits (serving/grpc/limits.ts); gRPC's defaults where absent (tests that build the door alone). */
  limits?: GrpcLimits;
  /** Whether this port serves HandleReloadConfigRequest: not while the admin plane listens apart (default true). */
  servesAdmin?: boolean;
}

const ModelSpecSchema = z
  .object({
    name: z.string(),
    version: z
      .object({ value: z.union([z.string(), z.number()]) })
      .nullable()
      .optional(),
    version_label: z.string().optional(),
    signature_name: z.string().optional(),
    version_choice: z.string().optional(),
  })
  .loose();

const PredictRequestSchema = z
  .object({
    model_spec: ModelSpecSchema.nullable(),
    inputs: z.record(z.string(), z.unknown()),
    output_filter: z.array(z.string()).optional(),
  })
  .loose();
const SpecOnlySchema = z
  .object({ model_spec: ModelSpecSchema.nullable(), metadata_field: z.array(z.string()).optional() })
  .loose();

const FeatureSchema = z
  .object({
    float_list: z
      .object({ value: z.array(z.number()) })
      .nullable()
      .optional(),
    int64_list: z
      .object({ value: z.array(z.union([z.string(), z.number()])) })
      .nullable()
      .optional(),
    bytes_list: z
      .object({ value: z.array(z.unknown()) })
      .nullable()
      .optional(),
    kind: z.string().optional(),
  })
  .loose();
const ExampleSchema = z
  .object({ features: z.object({ feature: z.record(z.string(), FeatureSchema) }).nullable() })
  .loose();
const ClassifyRequestSchema = z
  .object({
    model_spec: ModelSpecSchema.nullable(),
    input: z
      .object({
        example_list: z
          .object({ examples: z.array(ExampleSchema) })
          .nullable()
          .optional(),
        example_list_with_context: z
          .object({ examples: z.array(ExampleSchema), context: ExampleSchema.nullable() })
          .nullable()
          .optional(),
      })
      .loose()
      .nullable(),
  })
  .loose();

function parse<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw invalidArgument(`request: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

type PredictRequest = z.infer<typeof PredictRequestSchema>;

/**
 * The fast path's target, or undefined where targetOf would refuse it (the general path then says why); a malformed
 * model name or label is refused here already, before any lookup.
 */
function wireTarget(wire: WirePredictRequest): Target | undefined {
  if (!wire.name) return undefined;
  // Checked before any lookup or metric label, with REST's rule (serving/names.ts).
  const model = checkModelName(wire.name, 'model_spec.name');
  const target: Target = { model, signatureName: wire.signatureName || undefined };
  if (wire.version !== undefined) {
    if (!Number.isSafeInteger(wire.version) || wire.version < 1) return undefined;
    target.version = wire.version;
  } else if (wire.versionLabel) {
    target.label = checkLabel(wire.versionLabel, 'model_spec.version_label');
  }
  return target;
}

function targetOf(spec: z.infer<typeof ModelSpecSchema> | null): Target {
  if (!spec || !spec.name) throw invalidArgument('model_spec.name: required');
  const model = checkModelName(spec.name, 'model_spec.name');
  const target: Target = { model, signatureName: spec.signature_name || undefined };
  if (spec.version_choice === 'version' && spec.version) {
    const version = Number(spec.version.value);
    if (!Number.isSafeInteger(version) || version < 1)
      throw invalidArgument(`model_spec.version: ${quoted(String(spec.version.value))} is not a positive version`);
    target.version = version;
  } else if (spec.version_choice === 'version_label' && spec.version_label) {
    target.label = checkLabel(spec.version_label, 'model_spec.version_label');
  }
  return target;
}

function metadataValue(call: grpc.ServerUnaryCall<unknown, unknown>, key: string): string | undefined {
  const value = call.metadata.get(key)[0];
  return value === undefined ? undefined : String(value);
}

/** Wraps a handler: any throw becomes a gRPC status; nothing escapes to crash the process. */
function unary<Req, Res>(
  handler: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<{ response: Res; metadata?: grpc.Metadata }>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handler(call).then(
      ({ response, metadata }) => callback(null, response, metadata),
      (error: unknown) => {
        const failure = asServingError(error);
        callback({ code: grpcStatusOf(failure.code), details: clientMessage(failure.message) });
      },
    );
  };
}

function featureValues(feature: z.infer<typeof FeatureSchema>, where: string): number[] {
  if (feature.float_list) return feature.float_list.value;
  if (feature.int64_list) return feature.int64_list.value.map(Number);
  throw invalidArgument(`${where}: expected a float_list or int64_list`);
}

function classifyInputs(
  request: z.infer<typeof ClassifyRequestSchema>,
  signature: Signature,
  maxRows: number,
): DenseTensor[] {
  const input = request.input;
  const list = input?.example_list ?? input?.example_list_with_context;
  if (!list || list.examples.length === 0)
    throw invalidArgument('input: needs example_list or example_list_with_context with at least one example');
  if (list.examples.length > maxRows)
    throw invalidArgument(`input: ${list.examples.length} examples exceed the limit of ${maxRows} per request`);
  const context = input?.example_list_with_context?.context?.features?.feature ?? {};
  const rows = list.examples.length;
  const tensors = signature.inputs.map((spec) => ({
    dtype: spec.dtype,
    shape: [rows, ...spec.shape.slice(1)],
    data: allocate(spec.dtype, rows * rowSize(spec)),
  }));
  list.examples.forEach((example, i) => {
    const features = { ...context, ...(example.features?.feature ?? {}) };
    const unknown = Object.keys(features).filter((key) => !signature.inputs.some((s) => s.key === key));
    if (unknown.length)
      throw invalidArgument(
        `examples[${i}]: unknown feature ${unknown.map((k) => `"${k}"`).join(', ')}; the signature's inputs are ` +
          `${signature.inputs.map((s) => `"${s.key}"`).join(', ')}`,
      );
    signature.inputs.forEach((spec, j) => {
      const feature = features[spec.key];
      if (!feature) throw invalidArgument(`examples[${i}]: missing feature "${spec.key}"`);
      // tf.Example features are flat lists: one row of the input, row-major.
      const values = featureValues(feature, `examples[${i}].${spec.key}`);
      if (values.length !== rowSize(spec))
        throw invalidArgument(
          `examples[${i}].${spec.key}: ${values.length} values, the input needs ${rowSize(spec)} (shape ` +
            `[${spec.shape.slice(1).join(', ')}])`,
        );
      if (spec.dtype === 'int32' && !values.every(Number.isInteger))
        throw invalidArgument(`examples[${i}].${spec.key}: the input is int32; use an int64_list`);
      tensors[j]!.data.set(values, i * rowSize(spec));
    });
  });
  return tensors;
}

/**
 * A Classify or Regress request's examples for a SavedModel signature over tf.Examples: the Input's
 * example_list (or example_list_with_context, the context's features merged under each example's),
 * serialized as the signature's one DT_STRING input.
 */
function exampleInputs(
  request: z.infer<typeof ClassifyRequestSchema>,
  signature: Signature,
  maxRows: number,
  method: string,
): DenseTensor[] {
  if (signature.methodName !== method)
    throw invalidArgument(
      `signature "${signature.name}" is a ${signature.methodName} signature; this call needs a ${method} one ` +
        '(name it in model_spec.signature_name)',
    );
  const input = request.input;
  const list = input?.example_list ?? input?.example_list_with_context;
  if (!list || list.examples.length === 0)
    throw invalidArgument('input: needs example_list or example_list_with_context with at least one example');
  if (list.examples.length > maxRows)
    throw invalidArgument(`input: ${list.examples.length} examples exceed the limit of ${maxRows} per request`);
  const features = (example: z.infer<typeof ExampleSchema> | null | undefined, where: string) => {
    const entries = Object.entries(example?.features?.feature ?? {});
    if (entries.length > MAX_FEATURES)
      throw invalidArgument(`${where}: ${entries.length} features exceed the limit of ${MAX_FEATURES}`);
    return new Map(entries.map(([key, f]) => [key, messageFeature(f as FeatureMessage, `${where}.${key}`)]));
  };
  const context = input?.example_list_with_context?.context
    ? features(input.example_list_with_context.context, 'input.example_list_with_context.context')
    : undefined;
  const examples = list.examples.map((example, i) => features(example, `examples[${i}]`));
  return [examplesTensor(examples, context, maxRows)];
}

/** A classifier's scores ([rows, K]) as TF Serving's Classifications, one class per column. */
function labelledClassifications(labels: string[], scores: DenseTensor) {
  return Array.from({ length: scores.shape[0]! }, (_, r) => ({
    classes: labels.map((label, c) => ({ label, score: scores.data[r * labels.length + c]! })),
  }));
}

/** A classify signature's `classes` (DT_STRING) and `scores` outputs ([rows, K] each) as Classifications. */
function exampleClassifications(signature: Signature, outputs: DenseTensor[]) {
  const { classes, scores } = exampleOutputs(signature, outputs);
  const shape = (classes ?? scores)?.shape ?? [0, 0];
  const k = shape[1] ?? 1;
  return Array.from({ length: shape[0]! }, (_, r) => ({
    classes: Array.from({ length: k }, (_, c) => ({
      label: classes?.strings ? Buffer.from(classes.strings[r * k + c]!).toString() : '',
      score: scores ? scores.data[r * k + c]! : 0,
    })),
  }));
}

/** A records or images request's output_filter: each name one of `names`. */
function checkOutputFilter(filter: readonly string[] | undefined, names: readonly string[]): void {
  for (const name of filter ?? []) {
    if (!names.includes(name))
      throw invalidArgument(`output_filter: "${name}" is not an output (${names.map((n) => `"${n}"`).join(', ')})`);
  }
}

export function createGrpcServer(deps: GrpcDeps): grpc.Server {
  const { inference, manager, router } = deps;
  const protos = loadServingProtos();
  const server = new grpc.Server(grpcServerOptions(deps.limits ?? GrpcLimitsSchema.parse({}), deps.bodyLimitBytes));

  const context = (call: grpc.ServerUnaryCall<unknown, unknown>, api: Api): CallContext => ({
    api,
    protocol: 'grpc',
    clientKey: metadataValue(call, deps.stickyHeader),
    requestId: metadataValue(call, REQUEST_ID_HEADER),
  });
  const answerMetadata = (version: number, requestId: string) => {
    const metadata = new grpc.Metadata();
    metadata.set(VERSION_HEADER, String(version));
    metadata.set(REQUEST_ID_HEADER, requestId);
    return metadata;
  };

  /**
   * A general (proto-loader) request's inputs as the signature's tensors, every check naming its field.
   * A version that takes raw records reads named column tensors (record-tensors.ts) and marks `call`.
   */
  const predictInputs = (
    request: PredictRequest,
    signature: Signature,
    call: { records: boolean },
  ): DenseTensor[] | Promise<DenseTensor[]> => {
    const images = signature.images;
    const encoded = images && imagesFromTensors(request.inputs, images, inference.imageLimits, inference.maxRows);
    if (images && encoded) {
      checkOutputFilter(request.output_filter, recordOutputNames(images));
      call.records = true;
      return decodeImages(encoded, images, inference.imageLimits);
    }
    const records = signature.records;
    if (records && Object.keys(request.inputs).some((k) => !signature.inputs.some((s) => s.key === k))) {
      checkOutputFilter(request.output_filter, recordOutputNames(records));
      const encoded = recordsFromTensors(request.inputs, records, inference.maxRows);
      inference.countOutOfVocabulary(request.model_spec?.name ?? '', encoded.outOfVocabulary);
      call.records = true;
      return encoded.inputs;
    }
    const tensors = decodePredictInputs(request.inputs, signature, inference.maxRows);
    for (const name of request.output_filter ?? []) {
      if (!signature.outputs.some((s) => s.key === name))
        throw invalidArgument(`output_filter: "${name}" is not an output of the signature`);
    }
    return tensors;
  };
  /** The answer's outputs by key, only those the request's output_filter names (all without one). */
  const keptOutputs = (answer: Answer, outputFilter: readonly string[] | undefined) => {
    const filter = outputFilter?.length ? new Set(outputFilter) : undefined;
    return answer.outputs.flatMap((tensor, i) => {
      const { key, tfDType } = answer.signature.outputs[i]!;
      return !filter || filter.has(key) ? [{ key, tensor, tfDType }] : [];
    });
  };
  const recordsResponse = (answer: Answer, outputFilter: readonly string[] | undefined) => ({
    model_spec: {
      name: answer.model,
      version: { value: String(answer.version) },
      signature_name: answer.signature.name,
    },
    outputs: recordOutputTensors(
      (answer.signature.records ?? answer.signature.images)!,
      answer.outputs[0]!,
      outputFilter?.length ? new Set(outputFilter) : undefined,
    ),
  });
  const predictResponse = (answer: Answer, kept: { key: string; tensor: DenseTensor; tfDType?: string }[]) => ({
    model_spec: {
      name: answer.model,
      version: { value: String(answer.version) },
      signature_name: answer.signature.name,
    },
    outputs: Object.fromEntries(kept.map(({ key, tensor, tfDType }) => [key, encodeTensorProto(tensor, tfDType)])),
  });

  /**
   * A request the fast path read but cannot answer, decoded the general way: the pre-scan first, as for any other
   * body (its reader only bounds what it keeps, not what proto-loader would build from the same bytes: a
   * tensor_shape of a million dims, say). Given the signature, its limits are the signature's, as REST's (but
   * records and images are named column tensors, not the signature's inputs).
   */
  const generalRequest = (bytes: Uint8Array, signature?: Signature): PredictRequest => {
    const plain = signature && !signature.records && !signature.images;
    prescanPredictRequest(
      bytes,
      plain ? signatureLimits(signature, inference.maxRows) : requestLimits(inference.maxRows),
    );
    return parse(PredictRequestSchema, protos.decodePredictRequest(Buffer.from(bytes)));
  };

  // Predict reads the dense fast path's form where it can and answers with bytes it wrote itself;
  // the other methods (and any other request) keep proto-loader's codec.
  const predict = protos.predictionService.Predict!;
  const predictionService: grpc.ServiceDefinition = {
    ...protos.predictionService,
    Predict: {
      ...predict,
      // A throw here would answer INTERNAL: a body the pre-scan refuses is handed to the handler to refuse.
      requestDeserialize: (bytes: Buffer) => {
        const wire = readPredictRequest(bytes);
        if (wire) return wire;
        try {
          prescanPredictRequest(bytes, requestLimits(inference.maxRows));
        } catch (error) {
          return new RefusedRequest(error);
        }
        return predict.requestDeserialize(bytes);
      },
      responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : predict.responseSerialize(value)),
    },
  };

  const predictHandler = async (
    call: grpc.ServerUnaryCall<unknown, unknown>,
  ): Promise<{ response: unknown; metadata?: grpc.Metadata }> => {
    let raw: unknown = call.request;
    if (raw instanceof RefusedRequest) throw raw.error;
    if (raw instanceof WirePredictRequest) {
      // The dense fast path (predict-wire.ts); whatever it cannot take, the general path below rereads.
      const wire = raw;
      const target = wireTarget(wire);
      if (target) {
        const state = { records: false };
        let general: PredictRequest | undefined;
        const answer = await inference.run(
          target,
          context(call, 'predict'),
          (signature) =>
            wireInputs(wire, signature, inference.maxRows) ??
            predictInputs((general = generalRequest(wire.bytes, signature)), signature, state),
        );
        if (state.records)
          return {
            response: recordsResponse(answer, general?.output_filter),
            metadata: answerMetadata(answer.version, answer.requestId),
          };
        const kept = keptOutputs(answer, wire.outputFilter);
        const response =
          writePredictResponse(answer.model, answer.version, answer.signature.name, kept) ??
          predictResponse(answer, kept);
        return { response, metadata: answerMetadata(answer.version, answer.requestId) };
      }
      raw = generalRequest(wire.bytes);
    }
    const request = parse(PredictRequestSchema, raw);
    const target = targetOf(request.model_spec);
    const state = { records: false };
    const answer = await inference.run(target, context(call, 'predict'), (signature) =>
      predictInputs(request, signature, state),
    );
    return {
      response: state.records
        ? recordsResponse(answer, request.output_filter)
        : predictResponse(answer, keptOutputs(answer, request.output_filter)),
      metadata: answerMetadata(answer.version, answer.requestId),
    };
  };
  // Predict is also answered straight from the HTTP/2 stream, beneath grpc-js (raw-predict.ts): the same handler,
  // codec and status mapping without grpc-js's per-call machinery.
  rawPredictOf.set(server, {
    deserialize: predictionService.Predict!.requestDeserialize as (bytes: Buffer) => unknown,
    serialize: predictionService.Predict!.responseSerialize as (value: unknown) => Buffer,
    handle: predictHandler,
  });

  server.addService(predictionService, {
    Predict: unary(predictHandler),

    Classify: unary(async (call) => {
      const request = parse(ClassifyRequestSchema, call.request);
      const target = targetOf(request.model_spec);
      const answer = await inference.run(target, context(call, 'classify'), (signature) => {
        if (takesExamples(signature)) return exampleInputs(request, signature, inference.maxRows, CLASSIFY_METHOD);
        if (!signature.classLabels)
          throw invalidArgument(
            `model "${target.model}" is not a classifier (one output of shape [-1, K]); use Predict`,
          );
        return classifyInputs(request, signature, inference.maxRows);
      });
      const classifications = takesExamples(answer.signature)
        ? exampleClassifications(answer.signature, answer.outputs)
        : labelledClassifications(answer.signature.classLabels!, answer.outputs[0]!);
      return {
        response: {
          model_spec: {
            name: answer.model,
            version: { value: String(answer.version) },
            signature_name: answer.signature.name,
          },
          result: { classifications },
        },
        metadata: answerMetadata(answer.version, answer.requestId),
      };
    }),

    Regress: unary(async (call) => {
      const request = parse(ClassifyRequestSchema, call.request);
      const target = targetOf(request.model_spec);
      const answer = await inference.run(target, context(call, 'regress'), (signature) => {
        if (!takesExamples(signature))
          throw new ServingError(
            'UNIMPLEMENTED',
            `Regress is served for a SavedModel's regression signature (method ${REGRESS_METHOD}); signature ` +
              `"${signature.name}" of model "${target.model}" is not one; use Predict`,
          );
        return exampleInputs(request, signature, inference.maxRows, REGRESS_METHOD);
      });
      const values = exampleOutputs(answer.signature, answer.outputs).outputs ?? answer.outputs[0]!;
      return {
        response: {
          model_spec: {
            name: answer.model,
            version: { value: String(answer.version) },
            signature_name: answer.signature.name,
          },
          result: { regressions: Array.from(values.data, (value) => ({ value })) },
        },
        metadata: answerMetadata(answer.version, answer.requestId),
      };
    }),

    GetModelMetadata: unary(async (call) => {
      const request = parse(SpecOnlySchema, call.request);
      const target = targetOf(request.model_spec);
      const fields = request.metadata_field ?? [];
      const unsupported = fields.filter((f) => f !== 'signature_def');
      if (unsupported.length)
        throw invalidArgument(
          `metadata_field: ${unsupported.map((f) => `"${f}"`).join(', ')} not supported (only "signature_def")`,
        );
      const { version, signature, others } = metadataTarget(manager, router, target.model, target);
      const names = [signature.name, ...others.map((s) => s.name)];
      if (target.signatureName && !names.includes(target.signatureName))
        throw invalidArgument(
          `signature_name "${target.signatureName}" not found; this model serves ` +
            names.map((n) => `"${n}"`).join(', '),
        );
      return {
        response: {
          model_spec: { name: target.model, version: { value: String(version) }, signature_name: '' },
          metadata: {
            signature_def: {
              type_url: SIGNATURE_DEF_MAP_TYPE_URL,
              value: protos.encodeSignatureDefMap(signatureDefMap(signature, others)),
            },
          },
        },
      };
    }),
  });

  server.addService(protos.modelService, modelService(deps, deps.servesAdmin ?? true));
  return server;
}

/**
 * The admin plane's gRPC listener (`adminGrpcPort`, on the admin address): ModelService only, so a TF Serving
 * client's HandleReloadConfigRequest keeps working against an address the public cannot reach; predict calls are
 * UNIMPLEMENTED there.
 */
export function createAdminGrpcServer(
  deps: Pick<GrpcDeps, 'manager' | 'router' | 'admin' | 'bodyLimitBytes' | 'limits'>,
) {
  const server = new grpc.Server(grpcServerOptions(deps.limits ?? GrpcLimitsSchema.parse({}), deps.bodyLimitBytes));
  server.addService(loadServingProtos().modelService, modelService(deps, true));
  return server;
}

/**
 * ModelService's handlers. With `reload` false (the public port while the admin plane listens apart)
 * HandleReloadConfigRequest is UNIMPLEMENTED, as an admin path is a 404 on the public REST port: the method is not
 * there, whatever the credentials, and the message says where it is.
 */
function modelService(
  { manager, router, admin }: Pick<GrpcDeps, 'manager' | 'router' | 'admin'>,
  reload: boolean,
): grpc.UntypedServiceImplementation {
  return {
    GetModelStatus: unary(async (call) => {
      const request = parse(SpecOnlySchema, call.request);
      const target = targetOf(request.model_spec);
      return { response: statusMessage(versionStatus(manager, router, target.model, target)) };
    }),

    HandleReloadConfigRequest: unary(async (call) => {
      if (!reload)
        throw new ServingError(
          'UNIMPLEMENTED',
          'HandleReloadConfigRequest is not served on the public port: call it on the admin address ' +
            '(gantry serve --admin-grpc-port), or change models with the admin REST API (/v1/admin/models/NAME)',
        );
      admin.authorize(metadataValue(call, 'authorization'));
      const request = call.request as { config?: { model_config_list?: { config?: unknown[] } | null } | null };
      const list = request.config?.model_config_list;
      if (!list) throw invalidArgument('config.model_config_list: required (custom_model_config is not supported)');
      const parsed = ModelServerConfigSchema.safeParse({
        model_config_list: { config: (list.config ?? []).map(fromProtoModelConfig) },
      });
      if (!parsed.success) throw invalidArgument(`config: ${describeIssues(parsed.error.issues)}`);
      await admin.reloadConfig(parsed.data);
      return { response: { status: { error_code: 'OK', error_message: '' } } };
    }),
  };
}

/** A decoded ModelConfig message as the JSON config schema reads it (oneof markers and empty defaults dropped). */
function fromProtoModelConfig(raw: unknown): unknown {
  const config = raw as Record<string, unknown> & { model_version_policy?: Record<string, unknown> | null };
  const policy = config.model_version_policy;
  const choice = policy?.policy_choice as string | undefined;
  return {
    name: config.name,
    base_path: config.base_path,
    ...(config.model_platform ? { model_platform: config.model_platform } : {}),
    ...(policy && choice ? { model_version_policy: { [choice]: policy[choice] } } : {}),
    version_labels: config.version_labels ?? {},
  };
}

/**
 * Binds `host:port`; with `tls` (PEM certificate chain and key) the port speaks TLS only, and with `tls.ca` too
 * only to clients presenting a certificate that CA signed (mutual TLS, as the admin REST port).
 */
export function bindGrpc(
  server: grpc.Server,
  host: string,
  port: number,
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer },
): Promise<number> {
  const credentials = tls
    ? grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], !!tls.ca)
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
  });
}

export { ServingError };
