import { DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASS_NAMES, readFashionMnistSplit } from '../../data/sources';
import { ServingClient } from '../../serving/client';

/** How many test images the demo's last act sends: only these are read from the dataset. */
const SHOWN = 3;

/**
 * The demo's last act: a TF Serving-style REST predict of three real test images against the
 * model server the demo's stack runs (the one its rollout just steered), as the README's curl does,
 * through the project's own serving client.
 */
export async function predictOnServer(
  server: { url: string; grpcAddress?: string; what: string },
  model: string,
): Promise<void> {
  const client = new ServingClient({ url: server.url });
  const backend = await client.backendName();
  const versions = await client.modelStatus(model);
  const shown = await readFashionMnistSplit(DEFAULT_FASHION_MNIST_DIR, 'test', { limit: SHOWN });
  const answer = await client.predict(model, shown.images, { encoding: 'json' });
  console.log(
    `\nserving: ${server.what} — REST ${server.url}${server.grpcAddress ? `, gRPC ${server.grpcAddress}` : ''} ` +
      `(TensorFlow Serving's APIs)${backend ? `, backend ${backend}` : ''}`,
  );
  const states = versions.map((v) => `v${v.version} ${v.state}${v.error ? ` (${v.error})` : ''}`).join(', ');
  console.log(`GET  /v1/models/${model} → ${states || 'no versions'}`);
  console.log(`POST /v1/models/${model}:predict with ${shown.count} test images → version ${answer.version}`);
  answer.predictions.forEach((p, i) => {
    const best = p.indexOf(Math.max(...p));
    const truth = FASHION_MNIST_CLASS_NAMES[shown.labels[i]!];
    console.log(`  image ${i}: ${FASHION_MNIST_CLASS_NAMES[best]} (p = ${p[best]!.toFixed(3)}), true label ${truth}`);
  });
  console.log(`the same with curl, while the server runs (bin/gantry dev keeps one up and prints its address):`);
  console.log(`  curl -s ${server.url}/v1/models/${model}`);
  console.log(
    `  python3 -c 'import json; print(json.dumps({"instances": [[[[0]] * 28] * 28]}))' | ` +
      `curl -s -H 'content-type: application/json' -d @- ${server.url}/v1/models/${model}:predict`,
  );
}
