import { gantryHome } from '../../control/home';
import { CommandFailed } from '../errors';
import { startLocalStack } from '../stack';
import { serveAndPredict } from './demo-serve';
import { describeStack } from './dev';
import { runCommand } from './run';

/**
 * `make demo`: the embedded defaults end to end — a Temporal server, both worker pools, and the
 * fashion-mnist pipeline on all of Fashion-MNIST to a published version — then a clean stop.
 */
export async function demoCommand(options: { set: string[]; json?: boolean }): Promise<void> {
  const home = gantryHome();
  const started = performance.now();
  const stack = await startLocalStack(home, { port: 'free' });
  const stop = () => void stack.stop().then(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    if (!options.json) console.error(`${describeStack(home, stack)}\n`);
    process.env.TEMPORAL_ADDRESS = stack.target.address;
    process.env.TEMPORAL_NAMESPACE = stack.target.namespace;
    const result = await runCommand('fashion-mnist', { set: options.set, follow: !options.json, json: options.json });
    if (!options.json && result) {
      console.log(`\ndemo finished in ${((performance.now() - started) / 1000).toFixed(1)} s (including start-up); trained on the ${result.backend} backend`);
      const failed = result.reasons.filter((r) => r.startsWith('FAIL')).join('; ');
      // On a rerun the gate may rightly keep the champion; only a demo that serves nothing failed.
      if (!result.published && !result.champion) throw new CommandFailed(`the run finished but published nothing: ${failed}`);
      if (!result.published) console.log(`the champion v${result.champion!.version} stays in place: ${failed}`);
      await serveAndPredict(home, result.model);
    }
  } finally {
    await stack.stop();
  }
}
