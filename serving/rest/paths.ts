import { invalidArgument, ServingError } from '../errors';
import { checkLabel, checkModelName, quoted } from '../names';
import type { VersionChoice } from '../router';

/**
 * TF Serving's REST paths after `/v1/models/`: `NAME[/versions/N | /labels/L][:VERB | /metadata]`.
 * Parsed by hand because the verb follows a colon, which fastify's router reads as a parameter.
 * The name is checked against the folder-name rule before anything else sees it.
 */
export interface ModelPath extends VersionChoice {
  model: string;
  verb?: 'predict' | 'classify' | 'regress' | 'feedback';
  metadata: boolean;
}

const PATH = /^([^/:]*)(?:\/versions\/([^/:]*)|\/labels\/([^/:]*))?(?::([A-Za-z]+)|\/(metadata))?$/;
const VERBS = new Set(['predict', 'classify', 'regress', 'feedback']);

export function parseModelPath(rest: string): ModelPath {
  const match = PATH.exec(rest);
  if (!match)
    throw invalidArgument(
      `Malformed request: "/v1/models/${rest}" is not ` +
        `NAME[/versions/N|/labels/L][:predict|:classify|:regress|:feedback|/metadata]`,
    );
  const [, model = '', version, label, verb, metadata] = match;
  const out: ModelPath = { model: checkModelName(model), metadata: metadata !== undefined };
  if (version !== undefined) {
    if (!/^\d{1,15}$/.test(version) || Number(version) < 1)
      throw invalidArgument(`version ${quoted(version)} is not a positive integer`);
    out.version = Number(version);
  }
  if (label !== undefined) out.label = checkLabel(label);
  if (verb !== undefined) {
    if (!VERBS.has(verb))
      throw new ServingError(
        'NOT_FOUND',
        `Malformed request: unknown method ":${verb}" (predict, classify, regress, feedback)`,
      );
    out.verb = verb as ModelPath['verb'];
  }
  return out;
}
