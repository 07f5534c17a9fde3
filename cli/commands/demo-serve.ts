import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../../data/sources';
import type { GantryHome } from '../../control/home';
import { startModelServer } from '../../serving/server';

const CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/**
 * The demo's last act: `gantry serve` on the model repository the pipeline just published to,
 * then a TF Serving-style REST predict of three real test images, as the README's curl does.
 */
export async function serveAndPredict(home: GantryHome, model: string): Promise<void> {
  const server = await startModelServer({ modelBasePath: home.modelRepositoryDir, restPort: 0, grpcPort: 0 });
  try {
    await server.poll();
    const status = await (await fetch(`http://127.0.0.1:${server.restPort}/v1/models/${model}`)).json();
    const raw = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
    const size = 28 * 28;
    const instances = [0, 1, 2].map((i) => {
      const pixels = Array.from(raw.test.images.subarray(i * size, (i + 1) * size));
      return Array.from({ length: 28 }, (_, row) => pixels.slice(row * 28, (row + 1) * 28).map((v) => [v]));
    });
    const response = await fetch(`http://127.0.0.1:${server.restPort}/v1/models/${model}:predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances }),
    });
    const answer = (await response.json()) as { predictions?: number[][]; model_version?: string; error?: string };
    if (!response.ok || !answer.predictions) throw new Error(`predict failed (${response.status}): ${answer.error ?? JSON.stringify(answer)}`);
    console.log(`\nserving: gantry serve on ${home.modelRepositoryDir} — REST :${server.restPort}, gRPC :${server.grpcPort} (TensorFlow Serving's APIs), backend ${server.backend.name}`);
    console.log(`GET  /v1/models/${model} → ${JSON.stringify(status)}`);
    console.log(`POST /v1/models/${model}:predict with 3 test images → version ${answer.model_version ?? '?'}`);
    answer.predictions.forEach((p, i) => {
      const best = p.indexOf(Math.max(...p));
      console.log(`  image ${i}: ${CLASS_NAMES[best]} (p = ${p[best]!.toFixed(3)}), true label ${CLASS_NAMES[raw.test.labels[i]!]}`);
    });
    console.log('serve it yourself: bin/gantry serve, then the curl in the README');
  } finally {
    await server.close();
  }
}
