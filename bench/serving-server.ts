import { startModelServer } from '../serving/server';

/**
 * The model servers under test in bench/serving.ts — batching on and off — in a process of their
 * own, as `gantry serve` runs, with the environment the bench gives it (TensorFlow's thread
 * settings are read when TensorFlow starts, so they are per process; the bench's own process
 * keeps TensorFlow's defaults for its in-process ceilings). Prints one JSON line with the
 * ports, then serves until its stdin closes.
 */

const base = process.argv[2];
if (!base) throw new Error('usage: serving-server.ts MODEL_BASE_PATH');
const on = await startModelServer({ modelBasePath: base, restPort: 0, grpcPort: 0 });
const off = await startModelServer({ modelBasePath: base, restPort: 0, grpcPort: 0, batching: { enabled: false } });
console.log(
  JSON.stringify({
    on: { rest: on.restPort, grpc: on.grpcPort },
    off: { rest: off.restPort, grpc: off.grpcPort },
    backend: on.backend.name,
    tfThreads:
      `${process.env.TF_NUM_INTRAOP_THREADS ?? 'default'} / ` +
      (process.env.TF_NUM_INTEROP_THREADS === '-1'
        ? 'none (ops in the calling thread)'
        : (process.env.TF_NUM_INTEROP_THREADS ?? 'default')),
  }),
);
process.stdin.resume();
process.stdin.on('end', () => {
  void Promise.all([on.close(), off.close()]).then(() => process.exit(0));
});
