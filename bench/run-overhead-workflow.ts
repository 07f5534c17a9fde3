import { proxyActivities } from '@temporalio/workflow';

/** The floor of bench/run-overhead.ts: five no-op activities one after another, as a run's five stages are. */
const { noop } = proxyActivities<{ noop(stage: string): Promise<string> }>({ startToCloseTimeout: '1m' });

export async function bareWorkflow(): Promise<number> {
  for (const stage of ['ingest', 'train', 'evaluate', 'register', 'publish']) await noop(stage);
  return 5;
}
