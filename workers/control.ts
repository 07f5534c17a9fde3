// Entry point of a control-pool worker process: workflows plus ingest, evaluate, register, publish.
import { runPoolWorker } from './main';

await runPoolWorker('control');
