// Entry point of a predict-pool worker process: batch prediction's shards only (gantry predict --pool predict).
import { runPoolWorker } from './main';

await runPoolWorker('predict');
