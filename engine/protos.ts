import { fileURLToPath } from 'node:url';

/**
 * The include directory of TensorFlow's own protos (engine/protos/tensorflow/core/..., upstream's
 * paths, packages and field numbers): the graph writer (graph-def.ts) and the model server's gRPC
 * door (serving/grpc/protos.ts) load the same files from here.
 */
export const TENSORFLOW_PROTO_ROOT = fileURLToPath(new URL('./protos', import.meta.url));
