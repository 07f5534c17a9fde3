import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ServingError } from './errors';

/**
 * Who may send feedback. Feedback moves a version's online accuracy, which promotes or rolls back a
 * canary, so it is an input of the control loop: with tokens configured, only a caller bearing one
 * (`Authorization: Bearer TOKEN`) is heard, and its token's name labels what it sent in the metrics.
 * Without tokens, feedback is refused unless the operator opted into anonymous feedback (tests, an
 * embedding application that guards its own network). Refused, not accepted-and-ignored: a client
 * that is misconfigured learns it at once (401/403) instead of silently steering nothing.
 */

/** A token's name: one Prometheus label value, short and plain. */
export const FEEDBACK_CLIENT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Clients that hold no token: the label of what anonymous callers send, and of refused calls. */
export const ANONYMOUS_CLIENT = 'anonymous';

export const FeedbackTokenSchema = z
  .object({
    name: z.string().regex(FEEDBACK_CLIENT_PATTERN, 'must be 1-64 of [A-Za-z0-9_.-], starting with a letter or digit'),
    token: z.string().min(16, 'must be at least 16 characters').max(4096),
  })
  .strict()
  .refine((t) => t.name !== ANONYMOUS_CLIENT, { message: `"${ANONYMOUS_CLIENT}" is reserved`, path: ['name'] });
export type FeedbackToken = z.infer<typeof FeedbackTokenSchema>;

/**
 * Tokens from a token file's text (or GANTRY_FEEDBACK_TOKEN): one per line, `NAME:TOKEN`, or a bare
 * `TOKEN` named `default`; blank lines and `#` comments skipped. Errors name the line, never the token.
 */
export function parseFeedbackTokens(text: string, source: string): FeedbackToken[] {
  if (text.length > 1 << 20) throw new Error(`${source}: larger than 1 MiB`);
  const tokens: FeedbackToken[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const entry =
      colon < 0 ? { name: 'default', token: line } : { name: line.slice(0, colon), token: line.slice(colon + 1) };
    const parsed = FeedbackTokenSchema.safeParse(entry);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`${source} line ${i + 1}: ${issue.path.join('.') || 'token'} ${issue.message}`);
    }
    if (tokens.some((t) => t.name === parsed.data.name))
      throw new Error(`${source} line ${i + 1}: the name "${parsed.data.name}" is given twice`);
    tokens.push(parsed.data);
  });
  if (tokens.length > 1000) throw new Error(`${source}: more than 1000 tokens`);
  return tokens;
}

/** The token a client sends: what follows `NAME:` when it was given as a token file's line. */
export function bearerOf(value: string): string {
  const line = value.trim();
  const colon = line.indexOf(':');
  return colon < 0 ? line : line.slice(colon + 1);
}

export interface FeedbackCaller {
  /** The token's name, or `anonymous`. */
  client: string;
  /** Whether a configured token vouched for it. */
  trusted: boolean;
}

export class FeedbackAuth {
  /** SHA-256 of each token: equal-length digests compared in constant time, whatever the lengths sent. */
  private readonly digests: { name: string; digest: Buffer }[];

  constructor(
    tokens: readonly FeedbackToken[],
    private readonly anonymous: boolean,
  ) {
    this.digests = tokens.map((t) => ({ name: t.name, digest: sha256(t.token) }));
  }

  get configured(): boolean {
    return this.digests.length > 0;
  }

  /**
   * The caller of one :feedback call from its Authorization header; throws UNAUTHENTICATED (401)
   * without a credential and PERMISSION_DENIED (403) with a wrong one, or where feedback is off.
   */
  check(authorization: string | undefined): FeedbackCaller {
    if (this.digests.length === 0) {
      if (this.anonymous) return { client: ANONYMOUS_CLIENT, trusted: false };
      throw new ServingError(
        'PERMISSION_DENIED',
        'this server takes no feedback: start it with --feedback-token-file (or GANTRY_FEEDBACK_TOKEN), ' +
          'or --allow-anonymous-feedback',
      );
    }
    const match = /^Bearer +(\S{1,4096})$/i.exec(authorization?.trim() ?? '');
    if (!match) throw new ServingError('UNAUTHENTICATED', 'feedback needs "Authorization: Bearer <feedback token>"');
    const sent = sha256(match[1]!);
    let found: string | undefined;
    // Every token is compared, so the time taken says nothing about which one (or how much of it) matched.
    for (const { name, digest } of this.digests) if (timingSafeEqual(sent, digest)) found ??= name;
    if (found === undefined) throw new ServingError('PERMISSION_DENIED', 'the feedback token is not valid');
    return { client: found, trusted: true };
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
