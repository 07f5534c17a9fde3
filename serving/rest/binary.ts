import type { FastifyReply } from 'fastify';
import { invalidArgument } from '../errors';
import { readPredictRequest, wireInputs, writePredictResponse } from '../grpc/predict-wire';
import type { ServingProtos } from '../grpc/protos';
import { prescanPredictRequest, signatureLimits } from '../grpc/prescan';
import { decodePredictInputs, encodeTensorProto } from '../grpc/tensor-proto';
import type { Answer } from '../inference';
import { rowSize, type Signature } from '../signature';
import { fromBytes, type DenseTensor } from '../tensors';
import { PROTOBUF } from './headers';
import { answerHeaders, outputKeys } from './predict-reply';

/**
 * Binary :predict bodies and answers. A body is a serialized TF Serving PredictRequest
 * (application/x-protobuf; the URL names the model, the request's inputs are used), or with
 * application/octet-stream the raw little-endian tensor of the model's single input, its row count
 * given by the size. A caller that accepts application/x-protobuf gets a PredictResponse back.
 */
export function binaryInputs(
  contentType: string,
  bytes: Buffer,
  protos: ServingProtos,
  maxRows: number,
): (signature: Signature) => DenseTensor[] {
  if (contentType.startsWith(PROTOBUF)) {
    // The dense fast path (grpc/predict-wire.ts) first; the general decoder for anything else.
    const wire = readPredictRequest(bytes);
    // The general decoder makes an object per repeated value: the bounded walk (grpc/prescan.ts) first refuses,
    // for the price of reading the bytes once, any body that could not fit the signature.
    const general = (signature: Signature): DenseTensor[] => {
      prescanPredictRequest(bytes, signatureLimits(signature, maxRows));
      let decoded: { inputs?: Record<string, unknown> };
      try {
        decoded = protos.decodePredictRequest(bytes) as typeof decoded;
      } catch (error) {
        throw invalidArgument(`the body is not a PredictRequest: ${(error as Error).message}`);
      }
      return decodePredictInputs(decoded.inputs ?? {}, signature, maxRows);
    };
    if (!wire) return general;
    // The URL names the model and REST has no output filter: only the inputs are read (a body
    // with an output_filter takes the general path, as it did before the fast path existed).
    return (signature) =>
      (wire.outputFilter.length === 0 ? wireInputs(wire, signature, maxRows) : undefined) ?? general(signature);
  }
  return (signature) => {
    if (signature.inputs.length !== 1)
      throw invalidArgument('a raw tensor body needs a model with one input; send a PredictRequest instead');
    const spec = signature.inputs[0]!;
    if (spec.tfDType)
      throw invalidArgument(
        `a raw tensor body carries float32 or int32 values, but input "${spec.key}" is ${spec.tfDType}; send a ` +
          'PredictRequest instead',
      );
    const rows = bytes.byteLength / (rowSize(spec) * 4);
    if (!Number.isInteger(rows) || rows < 1)
      throw invalidArgument(
        `body: ${bytes.byteLength} bytes is not a whole number of rows of ${rowSize(spec)} ${spec.dtype} values`,
      );
    if (rows > maxRows) throw invalidArgument(`body: ${rows} rows exceed the limit of ${maxRows} per request`);
    return [
      {
        dtype: spec.dtype,
        shape: [rows, ...spec.shape.slice(1)],
        data: fromBytes(bytes, spec.dtype, rows * rowSize(spec), 'body'),
      },
    ];
  };
}

/** The answer as a serialized PredictResponse (the dense fast path when it can write it). */
export function sendProtobufAnswer(reply: FastifyReply, answer: Answer, protos: ServingProtos): FastifyReply {
  answerHeaders(reply, answer);
  const keys = outputKeys(answer);
  const fast = writePredictResponse(
    answer.model,
    answer.version,
    undefined,
    answer.outputs.map((tensor, i) => ({ key: keys[i]!, tensor, tfDType: answer.signature.outputs[i]?.tfDType })),
  );
  const outputs = fast
    ? undefined
    : Object.fromEntries(
        answer.outputs.map((t, i) => [keys[i]!, encodeTensorProto(t, answer.signature.outputs[i]?.tfDType)]),
      );
  return reply.type(PROTOBUF).send(
    fast ??
      protos.encodePredictResponse({
        model_spec: { name: answer.model, version: { value: String(answer.version) } },
        outputs,
      }),
  );
}
