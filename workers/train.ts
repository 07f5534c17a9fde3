// Entry point of a train-pool worker process: training activities only, one slot per device.
import { runPoolWorker } from './main';

// A device is a share of the CPU when there is no GPU: GANTRY_TRAIN_THREADS caps this worker's
// TensorFlow intra-op pool (ops themselves run in the calling thread: engine/backend.ts), so N
// workers on one host (a `mirrored` job) split its cores instead of fighting over them. Read by
// libtensorflow when it starts, so set before the backend loads.
const threads = process.env.GANTRY_TRAIN_THREADS;
if (threads !== undefined) {
  if (!/^[1-9]\d*$/.test(threads)) {
    console.error(`GANTRY_TRAIN_THREADS must be a positive integer, got "${threads}"`);
    process.exit(2);
  }
  process.env.TF_NUM_INTRAOP_THREADS ??= threads;
  process.env.OMP_NUM_THREADS ??= threads;
}

await runPoolWorker('train');
