import { clientMessage, ServingError } from './errors';
import type { VersionManager, VersionStatus } from './manager';
import type { RecordInputs } from './records';
import type { Router, VersionChoice } from './router';
import { DEFAULT_SIGNATURE, type Signature, type TensorSpec } from './signature';
import { DTYPE_OF } from './grpc/tensor-proto';

/**
 * Status and metadata in TF Serving's shapes. The objects use the protobuf field names with
 * int64 as strings and enums by name — exactly TF Serving's REST JSON, and what proto-loader
 * encodes for gRPC — so both doors answer from the same builders.
 */

export function versionStatus(
  manager: VersionManager,
  router: Router,
  model: string,
  choice: VersionChoice,
): VersionStatus[] {
  if (!manager.hasModel(model)) throw new ServingError('NOT_FOUND', `Could not find any versions of model "${model}"`);
  const all = manager.status(model);
  const version = choice.label !== undefined ? router.labelVersion(model, choice.label) : choice.version;
  if (version === undefined) {
    if (all.length === 0) throw new ServingError('NOT_FOUND', `Could not find any versions of model "${model}"`);
    return all;
  }
  const one = all.filter((s) => s.version === version);
  if (one.length === 0) throw new ServingError('NOT_FOUND', `Could not find version ${version} of model "${model}"`);
  return one;
}

export function statusMessage(statuses: VersionStatus[]): { model_version_status: object[] } {
  return {
    model_version_status: statuses.map((s) => ({
      version: String(s.version),
      state: s.state,
      status: { error_code: s.error === undefined ? 'OK' : 'UNKNOWN', error_message: clientMessage(s.error ?? '') },
    })),
  };
}

function tensorInfo(spec: TensorSpec): object {
  return {
    dtype: spec.tfDType ?? DTYPE_OF[spec.dtype],
    tensor_shape: { dim: spec.shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name: spec.tensorName,
  };
}

const RECORD_DTYPE = { numeric: 'DT_FLOAT', categorical: 'DT_STRING', boolean: 'DT_BOOL' } as const;

function info(dtype: string, shape: number[], name: string): object {
  return {
    dtype,
    tensor_shape: { dim: shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name,
  };
}

/**
 * A version that takes raw records shows them: one input per column keyed by its tensor name
 * (TensorInfo.name is the source's own column name), and the records' outputs (a classifier's
 * `scores` and `class`, a regression's `value`). Pre-encoded vectors are still accepted.
 */
function recordSignatureDef(records: RecordInputs, methodName: string): object {
  const outputs =
    records.outputs.task === 'classification'
      ? {
          scores: info('DT_FLOAT', [-1, records.outputs.classes.length], 'scores'),
          class: info('DT_STRING', [-1], 'class'),
        }
      : { value: info('DT_FLOAT', [-1], 'value') };
  return {
    inputs: Object.fromEntries(records.columns.map((c) => [c.tensorName, info(RECORD_DTYPE[c.kind], [-1], c.name)])),
    outputs,
    method_name: methodName,
  };
}

/** A SignatureDefMap (the value of metadata["signature_def"]); `others`: a SavedModel's further signatures. */
export function signatureDefMap(
  signature: Signature,
  others: readonly Signature[] = [],
): { signature_def: Record<string, object> } {
  if (signature.records)
    return { signature_def: { [DEFAULT_SIGNATURE]: recordSignatureDef(signature.records, signature.methodName) } };
  const def = (s: Signature) => ({
    inputs: Object.fromEntries(s.inputs.map((t) => [t.key, tensorInfo(t)])),
    outputs: Object.fromEntries(s.outputs.map((t) => [t.key, tensorInfo(t)])),
    method_name: s.methodName,
  });
  return {
    signature_def: Object.fromEntries([[signature.name, def(signature)], ...others.map((s) => [s.name, def(s)])]),
  };
}

/** The version a metadata request is about (must be AVAILABLE) and its signature. */
export function metadataTarget(
  manager: VersionManager,
  router: Router,
  model: string,
  choice: VersionChoice,
): { version: number; signature: Signature; others: Signature[] } {
  // Metadata without a version describes the latest, whatever a traffic split would pick.
  const explicit = choice.version !== undefined || choice.label !== undefined;
  const latest = manager.availableVersions(model).at(-1);
  const version = explicit || latest === undefined ? router.pick(model, choice, undefined).version : latest;
  const handle = manager.peek(model, version);
  if (!handle) throw new ServingError('UNAVAILABLE', `model "${model}" version ${version} is unloading; retry`);
  const others = [...(handle.servable.otherSignatures?.values() ?? [])].map((o) => o.signature);
  return { version, signature: handle.servable.signature, others };
}
