import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../../data/sources';

const CLASS_NAMES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/**
 * The demo's last act: a TF Serving-style REST predict of three real test images against the
 * model server the demo's stack runs (the one its rollout just steered), as the README's curl does.
 */
export async function predictOnServer(
  server: { url: string; grpcAddress?: string; what: string },
  model: string,
): Promise<void> {
  const listing = (await (await fetch(`${server.url}/v1/models`)).json()) as { backend?: { name?: string } };
  const status = await (await fetch(`${server.url}/v1/models/${model}`)).json();
  const raw = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
  const size = 28 * 28;
  const instances = [0, 1, 2].map((i) => {
    const pixels = Array.from(raw.test.images.subarray(i * size, (i + 1) * size));
    return Array.from({ length: 28 }, (_, row) => pixels.slice(row * 28, (row + 1) * 28).map((v) => [v]));
  });
  const response = await fetch(`${server.url}/v1/models/${model}:predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instances }),
  });
  const answer = (await response.json()) as { predictions?: number[][]; model_version?: string; error?: string };
  if (!response.ok || !answer.predictions)
    throw new Error(`predict failed (${response.status}): ${answer.error ?? JSON.stringify(answer)}`);
  console.log(
    `\nserving: ${server.what} — REST ${server.url}${server.grpcAddress ? `, gRPC ${server.grpcAddress}` : ''} (TensorFlow Serving's APIs)` +
      `${listing.backend?.name ? `, backend ${listing.backend.name}` : ''}`,
  );
  console.log(`GET  /v1/models/${model} → ${JSON.stringify(status)}`);
  console.log(`POST /v1/models/${model}:predict with 3 test images → version ${answer.model_version ?? '?'}`);
  answer.predictions.forEach((p, i) => {
    const best = p.indexOf(Math.max(...p));
    console.log(
      `  image ${i}: ${CLASS_NAMES[best]} (p = ${p[best]!.toFixed(3)}), true label ${CLASS_NAMES[raw.test.labels[i]!]}`,
    );
  });
  console.log(`the same with curl, while the server runs (bin/gantry dev keeps one up and prints its address):`);
  console.log(`  curl -s ${server.url}/v1/models/${model}`);
  console.log(
    `  python3 -c 'import json; print(json.dumps({"instances": [[[[0]] * 28] * 28]}))' | curl -s -H 'content-type: application/json' -d @- ${server.url}/v1/models/${model}:predict`,
  );
}
