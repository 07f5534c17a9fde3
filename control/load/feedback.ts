import type { FeedbackItem, ServingClient } from '../../serving/client';

export interface FeedbackCounts {
  /** Labels handed to the server, and what it said of them. */
  sent: number;
  accepted: number;
  unknown: number;
  rejected: number;
  /** Labels whose batch failed (the server unreachable, an error answer): counted, not retried. */
  failed: number;
  /** Labels waiting for the next flush. */
  pending: number;
  /** Why the last failed batch failed (e.g. a server that wants a feedback token); absent when none failed. */
  lastError?: string;
}

/**
 * The true labels of answered requests, sent to a model's :feedback in batches so that the
 * server can score each version's online accuracy. One call at a time, in order; a batch that
 * fails is counted, not retried: the load goes on either way.
 */
export class FeedbackSender {
  private pending: FeedbackItem[] = [];
  private chain: Promise<void> = Promise.resolve();
  private readonly tally: Omit<FeedbackCounts, 'pending'> = {
    sent: 0,
    accepted: 0,
    unknown: 0,
    rejected: 0,
    failed: 0,
  };

  constructor(
    private readonly client: ServingClient,
    private readonly model: string,
  ) {}

  /** The true label of the request the server answered with `requestId`; sent on the next flush. */
  add(requestId: string, label: number): void {
    this.pending.push({ requestId, labels: label });
  }

  /** Sends what is pending as one batch; resolves once every batch sent so far is answered. */
  flush(): Promise<void> {
    if (this.pending.length === 0) return this.chain;
    const batch = this.pending;
    this.pending = [];
    this.chain = this.chain.then(async () => {
      this.tally.sent += batch.length;
      try {
        const result = await this.client.feedback(this.model, batch);
        this.tally.accepted += result.accepted;
        this.tally.unknown += result.unknown_request_ids.length;
        this.tally.rejected += result.rejected.length;
      } catch (error) {
        this.tally.failed += batch.length;
        this.tally.lastError = (error as Error).message.slice(0, 500);
      }
    });
    return this.chain;
  }

  counts(): FeedbackCounts {
    return { ...this.tally, pending: this.pending.length };
  }
}
