import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * One error type for both front doors, carrying a canonical status code (TensorFlow's
 * `error::Code`, the same numbers as gRPC's). REST maps it to HTTP the way TF Serving's
 * http_rest_api_handler does; gRPC sends the code as is.
 */
export type StatusCode =
  | 'CANCELLED'
  | 'UNKNOWN'
  | 'INVALID_ARGUMENT'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'OUT_OF_RANGE'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  | 'DATA_LOSS'
  | 'UNAUTHENTICATED';

export class ServingError extends Error {
  constructor(
    readonly code: StatusCode,
    message: string,
  ) {
    super(message);
    this.name = 'ServingError';
  }
}

export const invalidArgument = (message: string) => new ServingError('INVALID_ARGUMENT', message);
export const notFound = (message: string) => new ServingError('NOT_FOUND', message);

/** TF Serving's ToHTTPStatusCode. */
const HTTP_STATUS: Record<StatusCode, number> = {
  CANCELLED: 499,
  UNKNOWN: 500,
  INVALID_ARGUMENT: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 400,
  ABORTED: 409,
  OUT_OF_RANGE: 400,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DATA_LOSS: 500,
  UNAUTHENTICATED: 401,
};

export function httpStatusOf(code: StatusCode): number {
  return HTTP_STATUS[code];
}

export function grpcStatusOf(code: StatusCode): GrpcStatus {
  return GrpcStatus[code];
}

/** Anything thrown inside a request becomes a ServingError; unknown errors are INTERNAL. */
export function asServingError(error: unknown): ServingError {
  if (error instanceof ServingError) return error;
  return new ServingError('INTERNAL', error instanceof Error ? error.message : String(error));
}

/** The most characters of an error message a client is shown. */
export const MAX_CLIENT_MESSAGE = 1024;

/**
 * An absolute filesystem path under a usual root (a model's files, a temp dir) — but not a URL path such as
 * /v1/models/x. It is shown by its last component only: a client learns which file, not where the server keeps it.
 */
const FILE_PATH =
  /(?<![\w:/.])\/(?:home|tmp|var|usr|opt|root|work|srv|mnt|data|Users|etc|private|run|media|nix|proc)\/[^\s"'`,;()]*/g;

/** A message as a client may see it: paths reduced to their file name, at most MAX_CLIENT_MESSAGE characters. */
export function clientMessage(message: string): string {
  const text = message.replace(FILE_PATH, (path) => path.split('/').filter(Boolean).pop() ?? '');
  return text.length > MAX_CLIENT_MESSAGE ? `${text.slice(0, MAX_CLIENT_MESSAGE - 1)}…` : text;
}
