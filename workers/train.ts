// Entry point of a train-pool worker process: training activities only, one slot per device.
import { runPoolWorker } from './main';

await runPoolWorker('train');
