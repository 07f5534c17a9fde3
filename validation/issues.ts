import type { z } from 'zod';

/**
 * zod issues as text, the one form every Gantry boundary reports (spec, CLI flags, HTTP and gRPC
 * bodies, settings files): `FIELD: reason`, each bad field named. A folder of its own because every
 * other one validates its input with zod and may import it; it imports nothing but zod's types.
 */

/** What a formatter needs of an issue (zod's own, or one built by hand beside them). */
export type Issue = Pick<z.core.$ZodIssue, 'path' | 'message'>;

export interface IssueFormat {
  /** Dotted field path in front of every issue's own, e.g. `model.options`. */
  prefix?: string;
  /** How a field is named, e.g. as the CLI flag that set it; by default its dotted path. */
  name?: (path: readonly PropertyKey[]) => string;
}

/** The dotted path of a field, `prefix` first; empty for the input as a whole. */
export function fieldPath(path: readonly PropertyKey[], prefix = ''): string {
  return [prefix, ...path.map(String)].filter(Boolean).join('.');
}

/** One `FIELD: reason` per issue; an issue about the input as a whole is its reason alone. */
export function issueLines(issues: z.ZodError | readonly Issue[], format: IssueFormat = {}): string[] {
  const list = 'issues' in issues ? issues.issues : issues;
  return list.map((issue) => {
    const field = format.name && issue.path.length ? format.name(issue.path) : fieldPath(issue.path, format.prefix);
    return field ? `${field}: ${issue.message}` : issue.message;
  });
}

/** Every issue on one line, `FIELD: reason; FIELD: reason`. */
export function describeIssues(issues: z.ZodError | readonly Issue[], format: IssueFormat = {}): string {
  return issueLines(issues, format).join('; ');
}
