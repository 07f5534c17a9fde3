import { LABEL_PATTERN, MODEL_NAME_PATTERN } from './config';
import { invalidArgument } from './errors';

/**
 * The rules a client-supplied model name or version label must pass before anything looks it up or
 * labels a metric with it: one function each, called by REST (rest/paths.ts) and gRPC (grpc/server.ts)
 * alike, so the two doors refuse the same names with the same INVALID_ARGUMENT. A well-formed name that is
 * not served is the router's NOT_FOUND, as in TF Serving.
 */

/** Characters of a refused name quoted back: enough to recognise it, never the whole of a hostile one. */
const QUOTED = 64;

/** `value` as JSON, cut to QUOTED characters: an error names what was refused without echoing megabytes. */
export function quoted(value: string): string {
  return value.length > QUOTED
    ? `${JSON.stringify(value.slice(0, QUOTED))}… (${value.length} characters)`
    : JSON.stringify(value);
}

/** A model name (one folder name): `field` names where it came from in the refusal. */
export function checkModelName(name: string, field = 'model name'): string {
  if (!MODEL_NAME_PATTERN.test(name))
    throw invalidArgument(`${field} ${quoted(name)} is not valid: 1-128 of [A-Za-z0-9_.-], not starting with "."`);
  return name;
}

/** A version label ([a-zA-Z0-9_]+, as TF Serving's version_labels keys). */
export function checkLabel(label: string, field = 'label'): string {
  if (!LABEL_PATTERN.test(label)) throw invalidArgument(`${field} ${quoted(label)} is not valid: [a-zA-Z0-9_]+`);
  return label;
}

/**
 * The version a label points at in a model's `version_labels`, or undefined: an own key only, so a label such as
 * `constructor` or `__proto__` is an unknown label rather than a hit on Object's prototype.
 */
export function labelledVersion(
  labels: Readonly<Record<string, number>> | undefined,
  label: string,
): number | undefined {
  return labels && Object.hasOwn(labels, label) ? labels[label] : undefined;
}
