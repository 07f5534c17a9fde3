import { stat } from 'node:fs/promises';
import { gantryHome } from '../../control/home';
import { resolveTemporalBinary } from '../../control/temporal-binary';
import { temporalTargetFromEnv } from '../../control/temporal-env';
import { findRunningEmbeddedTemporal } from '../../control/embedded-temporal';
import { DEFAULT_FASHION_MNIST_DIR } from '../../data/sources';
import { selectBackend, type BackendReport } from '../../engine/backend';
import { SHARED_MEMORY_DIR, sharedMemoryAddon } from '../../collectives';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/**
 * What this machine can run and why not: the TensorFlow.js backend that would be chosen (and
 * each faster one that is missing, with the reason), the collectives' same-host transport, the
 * Temporal server, the dataset.
 */
export async function doctorCommand(options: { json?: boolean }): Promise<void> {
  const home = gantryHome();
  const checks: Check[] = [];
  let backend: BackendReport | null = null;
  try {
    backend = await selectBackend();
    checks.push({
      name: 'backend',
      ok: true,
      detail:
        `${backend.name} (tfjs ${backend.tfjsVersion}, engine backend ` +
        `"${backend.engineBackend}"${backend.threads ? `, ${backend.threads} thread(s)` : ''})`,
    });
  } catch (error) {
    checks.push({ name: 'backend', ok: false, detail: (error as Error).message });
  }
  for (const missing of backend?.unavailable ?? [])
    checks.push({ name: `backend ${missing.name}`, ok: false, detail: missing.reason });
  if (backend) {
    const graph = backend.engineBackend === 'tensorflow';
    checks.push({
      name: 'graph execution',
      ok: graph,
      detail: graph
        ? 'training steps of Sequential models run as one TensorFlow graph each'
        : `needs the native backend; training steps run op by op on ${backend.name}`,
    });
  }

  const shared = sharedMemoryAddon();
  checks.push({
    name: 'shared-memory all-reduce',
    ok: 'addon' in shared,
    detail:
      'addon' in shared
        ? `trainers on one host all-reduce through ${SHARED_MEMORY_DIR}`
        : `${shared.unavailable}; trainers all-reduce over TCP`,
  });

  try {
    const target = temporalTargetFromEnv();
    if (target)
      checks.push({
        name: 'temporal',
        ok: true,
        detail: `TEMPORAL_ADDRESS ${target.address} (namespace ${target.namespace})`,
      });
    else {
      const binary = resolveTemporalBinary();
      const running = await findRunningEmbeddedTemporal(home);
      checks.push({
        name: 'temporal',
        ok: true,
        detail:
          `embedded: ${binary.path} (${binary.origin})` +
          `${running ? `, running at ${running.address}` : ', not running (start it with `gantry dev`)'}`,
      });
    }
  } catch (error) {
    checks.push({ name: 'temporal', ok: false, detail: (error as Error).message });
  }

  const dataset = await stat(DEFAULT_FASHION_MNIST_DIR).then(
    () => true,
    () => false,
  );
  checks.push({
    name: 'fashion-mnist',
    ok: dataset,
    detail: dataset
      ? DEFAULT_FASHION_MNIST_DIR
      : `${DEFAULT_FASHION_MNIST_DIR} is missing: apt-get install dataset-fashion-mnist`,
  });
  checks.push({ name: 'state folder', ok: true, detail: home.root });

  if (options.json) {
    console.log(JSON.stringify({ backend, checks }));
    return;
  }
  for (const c of checks) console.log(`${c.ok ? 'ok     ' : 'missing'} ${c.name.padEnd(22)} ${c.detail}`);
}
