import { Command, Option } from 'commander';
import { cancelCommand, statusCommand } from './commands/status';
import { demoCommand } from './commands/demo';
import { doctorCommand } from './commands/doctor';
import { loadCommand, loadEncodingOption } from './commands/load';
import { devCommand } from './commands/dev';
import { experimentStartCommand, experimentStatusCommand, experimentStopCommand } from './commands/experiment';
import { modelsDescribeCommand, modelsListCommand } from './commands/models';
import { modelsImportCommand } from './commands/models-import';
import { DEFAULT_SHARD_ROWS, predictCommand } from './commands/predict';
import {
  approveCommand,
  promoteCommand,
  rollbackCommand,
  rolloutStartCommand,
  rolloutStatusCommand,
} from './commands/rollout';
import { runNamedCommand } from './commands/run';
import { tuneCommand, tuneStatusCommand } from './commands/tune';
import { serveCommand } from './commands/serve';
import {
  scheduleCreateCommand,
  scheduleDescribeCommand,
  scheduleListCommand,
  scheduleSimpleCommand,
} from './commands/schedule';
import { uiCommand } from './commands/ui';
import { workerCommand } from './commands/worker';
import { initCommand } from './commands/init';
import { activateProject, projectWorkflowNames } from '../pipelines/load-project';
import { OverlapPolicySchema } from '../pipelines/spec';

const collect = (value: string, previous: string[]) => [...previous, value];

/** Runs a command, then exits with 0, 1 (it failed) or 2 (bad input) — never hangs on open handles. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<unknown>) {
  return async (...args: A) => {
    try {
      await fn(...args);
      process.exit(0);
    } catch (error) {
      const exitCode = (error as { exitCode?: number }).exitCode ?? 1;
      console.error(`gantry: ${(error as Error).message}`);
      if (process.env.GANTRY_DEBUG && error instanceof Error) console.error(error.stack);
      process.exit(exitCode);
    }
  };
}

const program = new Command('gantry')
  .description(
    'Keep machine-learning models alive in production: durable Temporal pipelines, TensorFlow.js training, model ' +
      'publishing.',
  )
  .showHelpAfterError()
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
  .option('--project <file>', 'the project file (default: GANTRY_PROJECT, else gantry.config.ts from here upward)');

/** Commands that run without a project, even inside one. */
const WITHOUT_PROJECT = new Set(['init']);

// Every other command loads the user's project first: its pipelines run by name, its names validate, and the
// children a command starts (workers, the model server) inherit it through GANTRY_PROJECT.
program.hook('preAction', async (_program, command) => {
  if (WITHOUT_PROJECT.has(command.name())) return;
  try {
    await activateProject({ explicit: program.opts<{ project?: string }>().project });
  } catch (error) {
    console.error(`gantry: ${(error as Error).message}`);
    if (process.env.GANTRY_DEBUG && error instanceof Error) console.error(error.stack);
    process.exit(2);
  }
});

program
  .command('init <dir>')
  .description('scaffold a project in <dir>: package.json, tsconfig, gantry.config.ts, a CSV pipeline, a test')
  .option('--name <name>', 'the project and pipeline name (default: the folder name)')
  .option('--force', 'write into a folder that is not empty')
  .action(action((dir: string, options) => initCommand(dir, options)));

program
  .command('dev')
  .description(
    "run the embedded Temporal server, a control worker, a train worker and one worker per pool the project's " +
      'steps name, in the foreground (Ctrl-C stops them)',
  )
  .option('--port <port>', 'Temporal gRPC port, or "auto" (7233 when free)', 'auto')
  .option('--headless', 'no Temporal Web UI')
  .option('--train-workers <n>', 'train worker processes (a job with N replicas needs N)', '1')
  .action(action(devCommand));

program
  .command('ui')
  .description(
    'the dashboard: runs with their learning curves, models, rollouts and experiments, live; actions need the ' +
      'admin token',
  )
  .option('--port <port>', 'port to listen on (0: a free one)', '8350')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .action(action(uiCommand));

program
  .command('worker')
  .description('run one worker of a pool against TEMPORAL_ADDRESS or the embedded server')
  .requiredOption('--pool <pool>', "control, train, predict (batch prediction), or a pool the project's steps name")
  .action(action(workerCommand));

program
  .command('run <pipeline>')
  .description(
    "start a retrain run of a pipeline (the project's or a built-in, by name, or a .ts/.json file), or a " +
      "project's workflow by its exported name, and wait for its result",
  )
  .option('--set <path=value>', 'override a spec field, e.g. --set train.epochs=3 (repeatable)', collect, [])
  .option('--follow', 'show live progress per stage and epoch')
  .option(
    '--replicas',
    'with --follow: each replica of a data-parallel train job too (rank, worker, step, loss, samples/s)',
  )
  .option('--json', 'print the result as one JSON object')
  .option('--detach', 'print the run id and return without waiting')
  .option('--id <runId>', 'workflow id for the run (default: <pipeline>-<time>-<random>)')
  .option('--arg <json>', "a project workflow's argument (JSON)")
  .option('--pipeline <name>', "a project workflow gets this pipeline's spec and Gantry's task queues (PipelineRun)")
  .action(
    action(async (pipeline: string, options) =>
      runNamedCommand(pipeline, options, { workflows: await projectWorkflowNames(await activateProject()) }),
    ),
  );

const tune = program
  .command('tune')
  .description(
    "run a hyperparameter study of a pipeline (its spec's tuning section): trials on the train pool, ranked on a " +
      'validation metric; the best is evaluated, registered and published like a run',
  )
  .argument('<pipeline>', 'the pipeline (a name or a .ts/.json file)')
  .option('--set <path=value>', 'override a spec field, e.g. --set data.limits.train=6000 (repeatable)', collect, [])
  .option('--trials <n>', 'trials to run (tuning.budget.trials)')
  .option('--parallel <k>', 'trials training at once (tuning.parallelism)')
  .option('--follow', 'print each trial as it starts, is promoted, finishes or is stopped')
  .option('--json', 'print the result as one JSON object')
  .option('--detach', 'print the study id and return without waiting')
  .option('--id <studyId>', 'workflow id for the study (default: <pipeline>-tune-<time>-<random>)')
  .action(action((pipeline: string, options) => tuneCommand(pipeline, options)));
tune
  .command('status <studyId>')
  .description("a study's trials (params, state, epochs, metric, why stopped) and the best so far")
  .option('--follow', 'print trial changes until the study ends, then the table')
  .option('--json', 'print as one JSON object: {trials: [{params, state, metric, ...}], best, ...}')
  // `tune` has --json and --follow of its own, and commander gives them to the parent: read both.
  .action(
    action((studyId: string, options, command: Command) =>
      tuneStatusCommand(studyId, { ...command.parent!.opts<{ json?: boolean; follow?: boolean }>(), ...options }),
    ),
  );

program
  .command('status <runId>')
  .description("a run's stages, training progress and result")
  .option('--json', 'print as JSON')
  .option('--replicas', 'each replica of a data-parallel train job: rank, address, step, loss, throughput')
  .action(action(statusCommand));

program
  .command('cancel <runId>')
  .description('cancel a run (training stops at its next step)')
  .action(action(cancelCommand));

const models = program.command('models').description('the model registry');
models
  .command('list')
  .option('--json', 'print as JSON')
  .description('registered models and their aliases')
  .action(action(modelsListCommand));
models
  .command('describe <model>')
  .option('--json', 'print as JSON')
  .description('every version of a model with metrics and lineage')
  .action(action(modelsDescribeCommand));
models
  .command('import <model> <path>')
  .description(
    'register a SavedModel (tf.saved_model.save, Keras model.export()) or a tfjs model.json folder as the next ' +
      'version of <model>: evaluated on the test split of the dataset its registry knows when the signature fits, ' +
      'published (no alias moves) when blessed',
  )
  .option('--signature <name>', 'the SavedModel signature to evaluate and record', 'serving_default')
  .option('--dataset <ref>', 'evaluate on this dataset: a fingerprint, a manifest.json, or a run id')
  .option('--json', 'print the result as JSON')
  .action(action(modelsImportCommand));

program
  .command('predict <model>')
  .description(
    'batch prediction: a published version (<model>, <model>:<version> or <model>@<alias>) over a whole file or ' +
      'folder (IDX images, a folder of images, CSV, JSON Lines, JSON, Parquet, Arrow) as a durable job of shards ' +
      'on a worker pool, written in input order to --output',
  )
  .requiredOption('--input <path>', 'the file or folder to predict')
  .requiredOption('--output <file>', 'where the predictions go (written whole or not at all)')
  .option('--format <format>', 'jsonl, csv or parquet (default: from the output name, else jsonl)')
  .option('--on-bad-row <policy>', 'skip (count and list them) or fail', 'skip')
  .option('--shard-rows <n>', 'rows per shard', String(DEFAULT_SHARD_ROWS))
  .option('--pool <pool>', 'the pool that runs the shards: train, or predict when its workers run', 'train')
  .option('--follow', 'print progress (shards, rows of each running shard) until the job ends')
  .option('--json', 'print the result as JSON')
  .action(action(predictCommand));

program
  .command('promote <model> <version>')
  .description(
    'make a published version the champion now (ends a running rollout of it as promoted); effective on every ' +
      'model server when it returns',
  )
  .option('--reason <text>', 'recorded with the decision')
  .option('--json', 'print as JSON')
  .action(action((model: string, version: string, options) => promoteCommand(model, version, options)));
program
  .command('rollback <model>')
  .description(
    'roll a running canary back, or the champion back to the previous champion (or --to an earlier published version)',
  )
  .option('--to <version>', 'the earlier published version to serve')
  .option('--reason <text>', 'recorded with the decision')
  .option('--json', 'print as JSON')
  .action(action((model: string, options) => rollbackCommand(model, options)));
program
  .command('approve <model>')
  .description(
    "approve a running rollout's promotion (its spec's approval gate), or a running workflow's approval() by its id",
  )
  .option('--reason <text>', 'recorded with the decision')
  .option('--json', 'print as JSON')
  .action(action((model: string, options) => approveCommand(model, options)));
const rollout = program.command('rollout').description('canary rollouts of published versions');
rollout
  .command('status <model>')
  .description("the running rollout's step and decisions, or the model's recent decisions and what the servers serve")
  .option('--json', 'print as JSON')
  .action(action((model: string, options) => rolloutStatusCommand(model, options)));
rollout
  .command('start <model> <version>')
  .description('roll a published version out against the champion, without a retrain')
  .option(
    '--pipeline <pipeline>',
    "take the rollout spec from this pipeline's deployment.rollout (default: the built-in defaults)",
  )
  .option(
    '--set <path=value>',
    'override a spec field of --pipeline, e.g. --set deployment.rollout.analysisInterval=5s (repeatable)',
    collect,
    [],
  )
  .option('--follow', 'print each decision and wait for the outcome (exit 1 when rolled back)')
  .option('--json', 'print as JSON')
  .action(action((model: string, version: string, options) => rolloutStartCommand(model, version, options)));

const experiment = program
  .command('experiment')
  .description('A/B experiments between published versions, decided on online accuracy');
experiment
  .command('start <model>')
  .description(
    'split the traffic over the arms (sticky per client key) for --duration, then name a winner by a ' +
      'two-proportion test',
  )
  .requiredOption('--arms <arms>', 'VERSION:WEIGHT,… e.g. v7:50,v8:50')
  .requiredOption('--duration <time>', 'how long it runs, e.g. 30m or 1h')
  .option('--alpha <p>', 'significance level (Bonferroni-corrected over the comparisons)', '0.05')
  .option('--min-feedback <n>', 'labelled predictions each arm needs before a winner can be named', '100')
  .option('--interval <time>', 'how often the arms are measured for `experiment status`', '5s')
  .option('--follow', 'wait for the verdict and print it')
  .option('--json', 'print as JSON')
  .action(action((model: string, options) => experimentStartCommand(model, options)));
experiment
  .command('status <model>')
  .option('--json', 'print as JSON')
  .description("the arms' traffic and accuracy so far, and the verdict")
  .action(action(experimentStatusCommand));
experiment
  .command('stop <model>')
  .description('end the experiment now and decide on the feedback gathered so far')
  .option('--reason <text>')
  .option('--json', 'print as JSON')
  .action(action((model: string, options) => experimentStopCommand(model, options)));

const schedule = program.command('schedule').description('scheduled retraining on Temporal Schedules');
schedule
  .command('create <pipeline>')
  .requiredOption('--cron <expr>', 'cron expression, e.g. "0 3 * * *"')
  .addOption(
    new Option('--overlap <policy>', 'when a run is still going at the next time').choices(OverlapPolicySchema.options),
  )
  .option('--set <path=value>', 'override a spec field (repeatable)', collect, [])
  .option('--id <scheduleId>', 'schedule id (default: retrain-<pipeline>)')
  .option('--paused', 'create it paused')
  .option('--json', 'print as JSON')
  .action(action((pipeline: string, options) => scheduleCreateCommand(pipeline, options)));
schedule.command('list').option('--json', 'print as JSON').action(action(scheduleListCommand));
schedule.command('describe <scheduleId>').option('--json', 'print as JSON').action(action(scheduleDescribeCommand));
schedule
  .command('pause <scheduleId>')
  .option('--note <note>')
  .action(action((id: string, o: { note?: string }) => scheduleSimpleCommand('pause', id, o.note)));
schedule
  .command('unpause <scheduleId>')
  .option('--note <note>')
  .action(action((id: string, o: { note?: string }) => scheduleSimpleCommand('unpause', id, o.note)));
schedule
  .command('trigger <scheduleId>')
  .description('start a run now')
  .action(action((id: string) => scheduleSimpleCommand('trigger', id)));
schedule.command('delete <scheduleId>').action(action((id: string) => scheduleSimpleCommand('delete', id)));

program
  .command('serve')
  .description(
    "serve the model repository over TensorFlow Serving's REST and gRPC APIs (hot swap, labels, traffic splits, " +
      'metrics)',
  )
  .option('--model-base-path <dir>', 'serve every <model>/<version>/ under this folder (default: GANTRY_HOME/models)')
  .option('--model-config-file <file>', 'a JSON ModelServerConfig listing the models to serve instead')
  .option('--host <host>', 'address to bind', '0.0.0.0')
  .option('--rest-port <port>', 'REST port (0 = any free port, "off")', '8501')
  .option('--grpc-port <port>', 'gRPC port (0 = any free port, "off")', '8500')
  .option(
    '--admin-port <port>',
    'port of the admin API, apart from the public REST port (0 = any free port, "same" = on the REST port, "off")',
    '8502',
  )
  .option('--admin-address <host>', 'address the admin API listens on (keep it private)', '127.0.0.1')
  .option(
    '--admin-grpc-port <port>',
    'gRPC port on --admin-address for TF Serving\'s HandleReloadConfigRequest (0 = any free port, "off")',
    'off',
  )
  .option('--tls-cert <file>', 'PEM certificate chain: REST, gRPC and the admin API speak TLS only (with --tls-key)')
  .option('--tls-key <file>', 'PEM private key of --tls-cert')
  .option('--tls-client-ca <file>', 'PEM CA: the admin API accepts only clients with a certificate it signed (mTLS)')
  .option('--poll-seconds <s>', 'how often to look for new versions', '1')
  .option('--no-batching', 'one model call per request')
  .option('--max-batch-size <rows>', 'rows merged into one model call at most', '64')
  .option(
    '--batch-timeout-micros <us>',
    'how long a batch may wait to fill (0: merge what arrives while the model is busy)',
    '0',
  )
  .option('--max-enqueued-batches <n>', 'queue bound per version, in batches (beyond it: 429)', '64')
  .option(
    '--admin-token-file <file>',
    'bearer token for the admin API (or GANTRY_SERVE_ADMIN_TOKEN); without one the admin API is off',
  )
  .option(
    '--feedback-token-file <file>',
    'who may send :feedback: lines NAME:TOKEN (or GANTRY_FEEDBACK_TOKEN); without one :feedback is refused',
  )
  .option(
    '--allow-anonymous-feedback',
    'accept :feedback from anyone when no token is given (anyone who can reach the port can steer canaries)',
  )
  .option('--feedback-memory-mb <mb>', 'memory for the predictions remembered for feedback', '64')
  .option(
    '--state-file <file>',
    "where admin changes are kept across restarts (default: this server's own file under " +
      'GANTRY_HOME/serving-state/, keyed by its model base path or config file and its ports)',
  )
  .option(
    '--request-timeout-ms <ms>',
    'longest a request may take (receiving it over REST, waiting for the model)',
    '30000',
  )
  .option('--body-limit-mb <mb>', 'largest request body', '16')
  .option(
    '--headers-timeout-ms <ms>',
    'REST: a request line and headers slower than this get 408 (slow-loris)',
    '10000',
  )
  .option('--keep-alive-timeout-ms <ms>', 'REST: an idle keep-alive connection is closed after this', '72000')
  .option('--socket-idle-timeout-ms <ms>', 'REST: a connection silent both ways this long is dropped', '120000')
  .option(
    '--grpc-call-timeout-ms <ms>',
    "gRPC: the server's deadline per call, client deadline or not (default: --request-timeout-ms)",
  )
  .option(
    '--grpc-channel-arguments <list>',
    'gRPC connection limits as TF Serving takes them, e.g. grpc.max_concurrent_streams=100,' +
      'grpc.max_connection_age_ms=1800000 (README: "Connection limits")',
  )
  .option('--no-warmup', 'skip the warm-up request before a version turns AVAILABLE')
  .option('--log-level <level>', 'silent, error, warn, info or debug', 'info')
  .action(action(serveCommand));

program
  .command('load <model>')
  .description(
    'replay the Fashion-MNIST test split as predict requests to a model server at a steady rate (with ' +
      '--feedback, their true labels too)',
  )
  .option(
    '--server <url>',
    'REST base URL of the model server (default: the first of GANTRY_SERVERS, else of GANTRY_HOME/servers.json)',
  )
  .option('--rps <n>', 'requests per second', '50')
  .option('--duration <time>', 'how long to send, e.g. 30s, 2m, 1h (default: until Ctrl-C)')
  .option('--requests <n>', 'stop after this many requests')
  .option('--concurrency <n>', 'requests in flight at most', '64')
  .option(
    '--clients <k>',
    'simulated users, each with a stable x-gantry-client-key so a traffic split is sticky per user (0: no key)',
    '0',
  )
  .option('--feedback', "send each answered request's true label to :feedback (batched every 200 ms)")
  .option('--version <n>', 'send every request to this version instead of following the traffic split')
  .option('--label <label>', 'send every request to the version this label points at')
  .addOption(loadEncodingOption())
  .option('--timeout-ms <ms>', 'longest a request may take', '10000')
  .option(
    '--data <dir>',
    'the Fashion-MNIST folder with the t10k IDX files (default: /usr/share/datasets/fashion-mnist)',
  )
  .option('--json', 'print the summary as one JSON object')
  .action(action((model: string, options) => loadCommand(model, options)));

program
  .command('doctor')
  .description(
    'which TensorFlow.js backend runs here (and why faster ones are missing), the Temporal server, the dataset',
  )
  .option('--json', 'print as JSON')
  .action(action(doctorCommand));

program
  .command('demo')
  .description('embedded Temporal + both pools + the fashion-mnist pipeline on all of Fashion-MNIST, then stop')
  .option('--set <path=value>', 'override a spec field (repeatable)', collect, [])
  .option('--json', 'print the result as one JSON object')
  .action(action(demoCommand));

await program.parseAsync(process.argv);
