import { PipelineSpecError } from './define';

/** Keys that would reach an object's prototype rather than a field of the spec. */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

type Issue = { path: string; message: string };

/**
 * Applies `--set path=value` overrides to a spec. Values are read as JSON when they parse
 * (numbers, booleans, arrays, objects) and as plain strings otherwise, so `--set train.epochs=3`
 * and `--set model.architecture=cnn` both do what they say. A path segment that is a number
 * indexes an array (`--set evaluation.gates.0.max=4`; the index may be the array's length, which
 * appends); anything that would leave the spec's own fields is refused.
 */
export function applyOverrides<T>(spec: T, assignments: readonly string[]): T {
  const result = structuredClone(spec) as Record<string, unknown>;
  const issues: Issue[] = [];
  for (const assignment of assignments) {
    const match = /^([A-Za-z_]\w*(?:\.(?:[A-Za-z_]\w*|\d+))*)=(.*)$/s.exec(assignment);
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
    const problem = assign(result, path.split('.'), value);
    if (problem) issues.push({ path, message: problem });
  }
  if (issues.length > 0) throw new PipelineSpecError(issues);
  return result as T;
}

/** Sets `keys` in `root` to `value`, making objects on the way; the reason it cannot, or undefined. */
function assign(root: Record<string, unknown>, keys: string[], value: unknown): string | undefined {
  let node: Record<string, unknown> | unknown[] = root;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (UNSAFE_KEYS.has(key)) return `"${key}" is not a field of the spec`;
    const last = i === keys.length - 1;
    if (Array.isArray(node)) {
      if (!/^\d+$/.test(key)) return `"${keys[i - 1]}" is a list: index it with a number, e.g. ${keys[i - 1]}.0`;
      const index = Number(key);
      if (index > node.length) return `"${keys[i - 1]}" has ${node.length} item(s): index ${index} is past its end`;
      if (last) {
        node[index] = value;
        return undefined;
      }
      if (node[index] === undefined) node[index] = {};
      const next: unknown = node[index];
      if (typeof next !== 'object' || next === null) return `cannot set a field inside item ${index}, not an object`;
      node = next as Record<string, unknown> | unknown[];
      continue;
    }
    if (/^\d+$/.test(key)) return `"${keys[i - 1] ?? key}" is not a list: ${key} cannot index it`;
    if (last) {
      node[key] = value;
      return undefined;
    }
    const next = Object.hasOwn(node, key) ? node[key] : undefined;
    if (next === undefined) node[key] = {};
    else if (typeof next !== 'object' || next === null)
      return `cannot set a field inside "${key}", which is not an object`;
    node = node[key] as Record<string, unknown> | unknown[];
  }
  return undefined;
}
