import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { TENSORFLOW_PROTO_ROOT } from '../../engine/protos';

/**
 * TF Serving's services, loaded at run time from the definitions in serving/protos and the
 * TensorFlow messages they import from engine/protos (the same files a test or any client can load
 * to talk to the server; the engine's graph writer loads the TensorFlow ones too). Options: field
 * names as written (snake_case, as in TF Serving's JSON), int64 as decimal strings (no precision
 * loss), enums by name, defaults filled in, and the name of the set member of each oneof.
 */

export const PROTO_ROOT = fileURLToPath(new URL('../protos', import.meta.url));
export const PROTO_FILES = [
  'tensorflow_serving/apis/prediction_service.proto',
  'tensorflow_serving/apis/model_service.proto',
  'gantry/serving/codec.proto',
];
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT, TENSORFLOW_PROTO_ROOT],
};

export const SIGNATURE_DEF_MAP_TYPE_URL = 'type.googleapis.com/tensorflow.serving.SignatureDefMap';

export interface ServingProtos {
  packageDefinition: protoLoader.PackageDefinition;
  predictionService: grpc.ServiceDefinition;
  modelService: grpc.ServiceDefinition;
  /** Clients for tests and benchmarks, from the same definitions. */
  PredictionServiceClient: grpc.ServiceClientConstructor;
  ModelServiceClient: grpc.ServiceClientConstructor;
  encodeSignatureDefMap(value: object): Buffer;
  decodeSignatureDefMap(bytes: Buffer): unknown;
  decodePredictRequest(bytes: Buffer): unknown;
  encodePredictResponse(value: object): Buffer;
  encodePredictRequest(value: object): Buffer;
  decodePredictResponse(bytes: Buffer): unknown;
}

let cached: ServingProtos | undefined;

export function loadServingProtos(): ServingProtos {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    tensorflow: {
      serving: { PredictionService: grpc.ServiceClientConstructor; ModelService: grpc.ServiceClientConstructor };
    };
  };
  const codec = packageDefinition['gantry.serving.Codec'] as protoLoader.ServiceDefinition;
  const predict = (packageDefinition['tensorflow.serving.PredictionService'] as protoLoader.ServiceDefinition).Predict!;
  const signatureDefMap = codec.SignatureDefMap!;
  const { PredictionService, ModelService } = root.tensorflow.serving;
  cached = {
    packageDefinition,
    predictionService: PredictionService.service,
    modelService: ModelService.service,
    PredictionServiceClient: PredictionService,
    ModelServiceClient: ModelService,
    encodeSignatureDefMap: (value) => signatureDefMap.requestSerialize(value),
    decodeSignatureDefMap: (bytes) => signatureDefMap.requestDeserialize(bytes),
    decodePredictRequest: (bytes) => predict.requestDeserialize(bytes),
    encodePredictResponse: (value) => predict.responseSerialize(value),
    encodePredictRequest: (value) => predict.requestSerialize(value),
    decodePredictResponse: (bytes) => predict.responseDeserialize(bytes),
  };
  return cached;
}
