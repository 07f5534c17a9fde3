import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { describeIssues, issueLines } from '../validation/issues';

describe('zod issues as text', () => {
  it('name each bad field (by path, prefix or flag) and its reason', () => {
    const parsed = z.object({ a: z.number(), b: z.object({ c: z.string() }) }).safeParse({ a: 'x', b: { c: 1 } });
    const error = parsed.error!;
    expect(describeIssues(error)).toMatch(/^a: .*number.*; b\.c: .*string/);
    expect(issueLines(error, { prefix: 'spec' })[1]).toMatch(/^spec\.b\.c: /);
    expect(describeIssues(error, { name: (path) => `--${String(path[0])}` })).toMatch(/^--a: .*; --b: /);
    expect(describeIssues([{ path: [], message: 'not an object' }])).toBe('not an object');
  });
});
