import { PipelineSpecError } from './define';

/**
 * Applies `--set path=value` overrides to a spec. Values are read as JSON when they parse
 * (numbers, booleans, arrays, objects) and as plain strings otherwise, so `--set train.epochs=3`
 * and `--set model.architecture=cnn` both do what they say.
 */
export function applyOverrides<T>(spec: T, assignments: readonly string[]): T {
  const result = structuredClone(spec) as Record<string, unknown>;
  const issues = [];
  for (const assignment of assignments) {
    const match = /^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)=(.*)$/s.exec(assignment);
    if (!match) {
      issues.push({ path: '--set', message: `"${assignment}" is not path=value (e.g. train.epochs=3)` });
      continue;
    }
    const [, path, raw] = match as unknown as [string, string, string];
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // Not JSON: keep the text as a string.
    }
    const keys = path.split('.');
    let node = result;
    for (const key of keys.slice(0, -1)) {
      const next = node[key];
      if (next === undefined) node[key] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        issues.push({ path, message: `cannot set a field inside "${key}", which is not an object` });
        node = {};
        continue;
      }
      node = node[key] as Record<string, unknown>;
    }
    node[keys.at(-1)!] = value;
  }
  if (issues.length > 0) throw new PipelineSpecError(issues);
  return result as T;
}
