/**
 * Collective communication for synchronous data-parallel training: a ring of trainers over TCP
 * (all-reduce, broadcast, reduce, barrier), in the spirit of Gloo/Horovod. See group.ts.
 */
export { CollectiveGroup } from './group';
export {
  DEFAULT_CHUNK_BYTES,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_CONNECTIONS,
  DEFAULT_MAX_REFUSALS_KEPT,
  DEFAULT_SEND_BUFFER_BYTES,
  type CollectiveGroupOptions,
  type ConnectOptions,
  type OperationOptions,
  type PeerAddress,
  type ReduceOp,
  type ReduceOptions,
  type SharedMemoryMode,
} from './options';
export { splitEvenly } from './algorithms';
export { collectiveKey, defaultKeyFile, deriveAttemptSecret, MIN_KEY_BYTES, SECRET_BYTES } from './secret';
export { Refusals } from './ring-formation';
export type { GroupState } from './lifecycle';
export type { TransportReport } from './transport';
export { SHARED_MEMORY_DIR, segmentPrefix, sharedMemoryAddon } from './shared-memory';
export {
  CollectiveError,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_QUEUED_BYTES,
  DEFAULT_TIMEOUT_MS,
  QUEUED_FRAME_OVERHEAD,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FRAME_VERSION,
  FrameReader,
  FrameType,
  FramedSocket,
  encodeFrame,
  encodeHeader,
  frameTypeName,
  type CollectiveErrorCode,
  type FrameHeader,
  type FrameReaderOptions,
  type FramedSocketOptions,
  type ReceiveOptions,
} from './frames';
export {
  HandshakeSchema,
  HelloSchema,
  ProofSchema,
  WelcomeSchema,
  acceptHandshake,
  handshakeMismatch,
  handshakeProof,
  offerHandshake,
  parseHandshake,
  parseHandshakeFrame,
  type Handshake,
} from './handshake';
