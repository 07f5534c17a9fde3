import { z } from 'zod';
import { MissingPolicySchema } from '../data/preprocessing';
import { METRIC_NAMES } from '../training/metrics';
import { notADuration, parseDuration } from './duration';

/**
 * A pipeline spec is plain data: it travels through Temporal as the retrain workflow's input and
 * is stored with every registered version as lineage. Model architectures and data sources are
 * named here and resolved by the workers' registries (training/architectures, data/sources).
 */

const identifier = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    'must be 1-63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit',
  );

/** A positive duration with a unit, kept as text: Temporal takes some of them as they are. */
export const DurationSchema = z
  .string()
  .refine((text) => parseDuration(text) !== undefined, { error: (issue) => notADuration(issue.input) });

/** How one column of a tabular source is read; anything left out is inferred on the first run. */
export const ColumnSpecSchema = z
  .object({
    /** `ignore` leaves the column out of the model (an id, a free-text name). */
    type: z.enum(['numeric', 'categorical', 'boolean', 'ignore']).optional(),
    /** What a missing value does: `impute` (training mean / most frequent value), `drop` the row, `fail` the run. */
    missing: MissingPolicySchema.optional(),
  })
  .strict();

export const DataSpecSchema = z
  .object({
    /**
     * A name from the data-source registry: built in `fashion-mnist`, `idx`, `csv`, `jsonl`, `json`, `parquet`,
     * `arrow`, `image-folder`, or one the project registers.
     */
    source: identifier,
    /** Where the source's files are (relative paths from the project folder); each source has its own default. */
    path: z.string().min(1).optional(),
    /** Tabular sources: the column to predict. */
    label: z.string().min(1).optional(),
    /** Inferred from the label when left out: numeric → regression, otherwise classification. */
    task: z.enum(['classification', 'regression']).optional(),
    /** Per-column overrides of the inferred schema, by the source's own column names. */
    columns: z.record(z.string(), ColumnSpecSchema).default({}),
    /** The missing-value policy of every column that does not set its own. */
    missing: MissingPolicySchema.default('impute'),
    /** A malformed row or file (a short row, an unparsable number, an unreadable image): fail the run or skip it. */
    onMalformed: z.enum(['fail', 'skip']).default('fail'),
    /** A difference from the stored schema (missing column, new category, type change, out of range). */
    onAnomaly: z.enum(['fail', 'warn']).default('fail'),
    /** Image sources: every image is decoded and resized to this. */
    image: z
      .object({
        height: z.number().int().min(1).max(4096),
        width: z.number().int().min(1).max(4096),
        channels: z.union([z.literal(1), z.literal(3)]).default(3),
      })
      .strict()
      .optional(),
    /** Sources without a test split of their own hold this share of the rows out for testing. */
    testFraction: z.number().gt(0).lt(1).default(0.2),
    seed: z.number().int().default(42),
    validationFraction: z.number().gt(0).lt(1).default(0.1),
    /** Use a reproducible slice of the data (tests, quick runs). */
    limits: z
      .object({ train: z.number().int().positive().optional(), test: z.number().int().positive().optional() })
      .strict()
      .default({}),
  })
  .strict();

export const ModelSpecSchema = z
  .object({
    /** The registered model's name: one registry entity and one folder of the model repository. */
    name: identifier,
    /** A name from the architecture registry, e.g. `mlp` or `cnn`. */
    architecture: identifier,
    /** Architecture options, checked by the architecture's own schema. */
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

/** After tf.distribute; see training/distributed/. */
export const STRATEGIES = ['mirrored', 'multi-worker-mirrored', 'central-storage'] as const;
export const STRATEGY_NAMES = [...STRATEGIES, 'tpu'] as const;

const strategy = z.enum(STRATEGY_NAMES).refine((s) => s !== 'tpu', {
  message: `no TPU runtime exists for TensorFlow.js, so there is no "tpu" strategy; use ${STRATEGIES.join(', ')}`,
});

export const ElasticSpecSchema = z
  .object({
    /** An attempt may start with as few as this many replicas when the rest do not join in time. */
    minReplicas: z.number().int().min(1).max(64),
  })
  .strict();

export const TrainSpecSchema = z
  .object({
    epochs: z.number().int().min(1).max(1000).default(12),
    batchSize: z.number().int().min(1).max(65536).default(128),
    learningRate: z.number().positive().max(10).default(0.001),
    optimizer: z.enum(['adam', 'sgd', 'rmsprop']).default('adam'),
    /**
     * `cosine` decays the rate over the epochs to 5% of `learningRate`; a function of the epoch, so resumes are
     * exact.
     */
    learningRateSchedule: z.enum(['constant', 'cosine']).default('constant'),
    seed: z.number().int().default(1),
    /** How long the train pool may go silent before Temporal declares the trainer lost and retries. */
    heartbeatTimeout: DurationSchema.default('60s'),
    /** Attempts of the train activity, each resuming from the last checkpoint. */
    maxAttempts: z.number().int().min(1).max(100).default(5),
    /** Optional pause after every step: makes a short run long enough to watch or to interrupt. */
    stepDelayMs: z.number().int().min(0).max(10_000).default(0),
    /**
     * Data parallelism: `replicas` synchronous trainers, each on its shard of every global batch
     * (`batchSize` per replica, so the global batch is batchSize × replicas). `mirrored` with one
     * replica is plain single-trainer training.
     */
    strategy: strategy.default('mirrored'),
    replicas: z.number().int().min(1).max(64).default(1),
    /** Let an attempt go on with fewer replicas (down to minReplicas) when trainers are missing. */
    elastic: ElasticSpecSchema.optional(),
    /** `linear`: learning rate × replicas (Goyal et al. 2017), reached by a linear warm-up over `warmupEpochs`. */
    learningRateScaling: z.enum(['none', 'linear']).default('none'),
    warmupEpochs: z.number().min(0).max(100).default(0),
    /** Rank 0 also checkpoints every this many steps (besides every epoch). */
    checkpointEverySteps: z.number().int().min(1).optional(),
    /** How long an attempt waits for all its trainers to join before it fails (or shrinks, if elastic). */
    rendezvousTimeout: DurationSchema.default('2m'),
    /** Check after every step that all replicas hold identical weights (costs a broadcast per step). */
    verifyReplicas: z.boolean().default(false),
  })
  .strict()
  .superRefine((train, ctx) => {
    if (train.elastic && train.elastic.minReplicas > train.replicas) {
      ctx.addIssue({
        code: 'custom',
        path: ['elastic', 'minReplicas'],
        message: `must be at most train.replicas (${train.replicas})`,
      });
    }
    if (train.strategy === 'central-storage' && train.replicas < 2) {
      ctx.addIssue({
        code: 'custom',
        path: ['replicas'],
        message: 'central-storage needs at least 2 replicas: one holds the variables, the others send it gradients',
      });
    }
  });

// One list of metric names, training's: what evaluation measures is what a gate may name.
export { METRIC_NAMES, type MetricName } from '../training/metrics';

export const MetricGateSchema = z
  .object({
    metric: z.enum(METRIC_NAMES),
    min: z.number().optional(),
    max: z.number().optional(),
    maxWorsening: z.number().min(0).optional(),
  })
  .strict();

export const EvaluationSpecSchema = z
  .object({
    /** Absolute gate: the candidate's test accuracy must reach this. */
    minAccuracy: z.number().min(0).max(1).default(0.8),
    /** Absolute gate on test loss (cross-entropy), if set. */
    maxLoss: z.number().positive().optional(),
    /**
     * Change gate against the champion: candidate accuracy − champion accuracy must be at least
     * this. 0 = no worse than the champion; −0.005 tolerates half a point of noise.
     */
    minAccuracyDelta: z.number().min(-1).max(1).default(0),
    /**
     * Gates on any metric of the task (classification: accuracy, auc, logLoss; regression: rmse, mae, r2), each
     * absolute (`min` / `max`) and against the champion (`maxWorsening`: how much worse than the champion's value
     * the candidate's may be, in the metric's units). Regression runs gate on these alone; classification runs on
     * these and the accuracy fields above.
     */
    gates: z.array(MetricGateSchema).max(20).default([]),
  })
  .strict();

const fraction = z.number().min(0).max(1);

/** What a canary must hold to pass; each is judged on the canary's traffic since its step began. */
export const RolloutThresholdsSchema = z
  .object({
    /** Absolute: errored requests ÷ requests of the canary. */
    maxErrorRate: fraction.default(0.01),
    /** Relative: canary error rate − champion error rate. */
    maxErrorRateIncrease: fraction.default(0.005),
    /** Absolute p99 latency of the canary, in ms (off unless set; judged from minRequestsForP99 requests). */
    maxP99LatencyMs: z.number().positive().optional(),
    /**
     * Relative: canary p99 ÷ champion p99 (judged once the champion has traffic of its own). Until
     * both windows hold minRequestsForP99 requests the ratio is taken of their p90s instead.
     */
    maxP99LatencyRatio: z.number().min(1).default(2),
    /**
     * Requests a window needs before its p99 is judged. The p99 of n requests rests on the n/100
     * slowest: of 90, on the single slowest, which one scheduling hiccup or GC pause sets — a
     * canary would roll back for noise. Below this the latency ratio compares p90s (9 of 90).
     */
    minRequestsForP99: z.number().int().min(100).default(1000),
    /** Absolute online accuracy of the canary from feedback (off unless set). */
    minOnlineAccuracy: fraction.optional(),
    /** Relative: champion online accuracy − canary online accuracy, in accuracy units (0.05 = 5 points). */
    maxAccuracyDrop: fraction.default(0.05),
    /** Labelled canary predictions needed before accuracy (or a regression's online error) is judged. */
    minFeedback: z.number().int().min(1).default(50),
    /** A regression: absolute online RMSE of the canary against the values sent back as feedback (off unless set). */
    maxOnlineError: z.number().positive().optional(),
    /** A regression, relative: (canary RMSE − champion RMSE) ÷ champion RMSE (0.1 = 10 % worse). */
    maxOnlineErrorIncrease: z.number().min(0).default(0.1),
    /** Jensen–Shannon divergence (bits) of the canary's predicted-class distribution from the champion's. */
    maxPredictionDivergence: fraction.default(0.1),
    /** Shadow phase: share of shadow answers whose class differs from the served answer. */
    maxShadowDisagreement: fraction.default(0.2),
  })
  .strict();

export const RolloutStepSchema = z
  .object({
    /** Share of the requests that name no version which the canary answers. */
    percent: z.number().gt(0).max(100),
    /** How long the step is held while its analysis runs. */
    bake: DurationSchema,
  })
  .strict();

/**
 * The canary rollout that takes a blessed version to production (workflows/rollout.ts): an
 * optional shadow phase, then traffic steps, each baked while the servers' metrics are judged;
 * a breach rolls back at once, all steps passed promote (after an optional manual approval).
 */
export const RolloutSpecSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** First a copy of `percent` % of the traffic goes to the canary, whose answers are only measured. */
    shadow: z
      .object({ percent: z.number().gt(0).max(100).default(100), bake: DurationSchema.default('1m') })
      .strict()
      .optional(),
    steps: z
      .array(RolloutStepSchema)
      .min(1)
      .max(20)
      .default([
        { percent: 5, bake: '5m' },
        { percent: 25, bake: '5m' },
        { percent: 50, bake: '5m' },
        { percent: 100, bake: '5m' },
      ]),
    /** How often the servers' metrics are read and judged during a bake. */
    analysisInterval: DurationSchema.default('30s'),
    /** Canary requests a step needs to be judged; with fewer, its bake is extended. */
    minRequests: z.number().int().min(1).default(100),
    /** Bake extensions for too little traffic before the rollout gives up and rolls back. */
    maxExtensions: z.number().int().min(0).max(100).default(3),
    thresholds: RolloutThresholdsSchema.default(RolloutThresholdsSchema.parse({})),
    /** A manual gate before promotion: waits for `gantry approve`, then `onTimeout` happens. */
    approval: z
      .object({ timeout: DurationSchema.default('1h'), onTimeout: z.enum(['promote', 'rollback']).default('rollback') })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((rollout, ctx) => {
    rollout.steps.forEach((step, i) => {
      if (i > 0 && step.percent <= rollout.steps[i - 1]!.percent) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'percent'],
          message: `must be more than the previous step's ${rollout.steps[i - 1]!.percent} %`,
        });
      }
    });
  });
export type RolloutSpec = z.output<typeof RolloutSpecSchema>;
export type RolloutThresholds = z.output<typeof RolloutThresholdsSchema>;

export const DeploymentSpecSchema = z
  .object({
    /** Write blessed versions to the model repository (and move the alias, or roll out). */
    publish: z.boolean().default(true),
    alias: identifier.default('champion'),
    /** Take a published version to production through a canary; without it the alias moves at once. */
    rollout: RolloutSpecSchema.optional(),
  })
  .strict();

/** Where in the retrain flow a user step runs (see workflows/retrain.ts). */
export const STEP_POINTS = [
  'after-ingest',
  'after-train',
  'after-evaluate',
  'before-publish',
  'before-rollout',
  'after-rollout',
] as const;
export type StepPoint = (typeof STEP_POINTS)[number];

/**
 * A user step placed in the pipeline: a registered step's name and where it runs. Pool, timeout and retries
 * default to the step's own (filled in from the project when the run is submitted, so the workflow has them as
 * data).
 */
export const StepPlacementSchema = z
  .object({
    name: identifier,
    at: z.enum(STEP_POINTS),
    pool: identifier.optional(),
    timeout: DurationSchema.optional(),
    retries: z.number().int().min(0).max(100).optional(),
    /** Plain data handed to the step. */
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type StepPlacement = z.output<typeof StepPlacementSchema>;

export const OverlapPolicySchema = z.enum([
  'skip',
  'buffer-one',
  'buffer-all',
  'cancel-other',
  'terminate-other',
  'allow-all',
]);

export const ScheduleSpecSchema = z
  .object({
    cron: z.string().min(1),
    overlap: OverlapPolicySchema.default('skip'),
  })
  .strict();

/** Both ends of a search range, low first. */
const range = (bound: z.ZodNumber) =>
  z.tuple([bound, bound]).refine(([low, high]) => low < high, { message: 'must be [low, high] with low < high' });

/**
 * One dimension of a search space: a log-uniform or uniform real range, an integer range (both ends included) or
 * a choice among JSON values (numbers, strings, booleans, lists of numbers such as hidden-layer sizes).
 */
export const SearchParamSchema = z.union([
  z.object({ logUniform: range(z.number().positive()) }).strict(),
  z.object({ uniform: range(z.number()) }).strict(),
  z.object({ int: range(z.number().int()) }).strict(),
  z
    .object({
      choice: z
        .array(z.union([z.number(), z.string().max(200), z.boolean(), z.array(z.number()).max(16)]))
        .min(1)
        .max(64),
    })
    .strict(),
]);
export type SearchParam = z.output<typeof SearchParamSchema>;

/** The spec paths a study may vary: training and model fields (a trial shares the study's one ingested dataset). */
const TUNABLE_PATH = /^(train|model)\.[A-Za-z_]\w*(\.(?:[A-Za-z_]\w*|\d+))*$/;
const UNTUNABLE = new Set(['model.name', 'model.architecture', 'train.epochs', 'train.seed']);

export const TUNING_ALGORITHMS = ['random', 'tpe', 'asha'] as const;

/**
 * A hyperparameter study (`gantry tune`, workflows/tune.ts): trials of the spec with the space's values set, trained
 * on the train pool and ranked by a validation metric; the best one is evaluated, registered and published like a
 * run's model.
 */
export const TuningSpecSchema = z
  .object({
    /** Dotted spec path (e.g. `train.learningRate`, `model.options.dropout`) → its range or choices. */
    space: z
      .record(
        z.string().regex(TUNABLE_PATH, 'must be a dotted path under train. or model. (e.g. train.learningRate)'),
        SearchParamSchema,
      )
      .refine((space) => Object.keys(space).length >= 1 && Object.keys(space).length <= 20, {
        message: 'must name 1 to 20 parameters',
      })
      .refine((space) => !Object.keys(space).some((key) => UNTUNABLE.has(key)), {
        message: `cannot vary ${[...UNTUNABLE].join(', ')}: epochs are the budget's, the rest name the study`,
      }),
    /**
     * What a trial is ranked by, on the validation split after each epoch: a task metric (accuracy, auc, logLoss,
     * rmse, mae, r2) or the loss. `goal` defaults to max for accuracy, auc and r2, min otherwise.
     */
    objective: z
      .object({
        metric: z.enum([...METRIC_NAMES, 'loss']).default('accuracy'),
        goal: z.enum(['min', 'max']).optional(),
      })
      .strict()
      .default({ metric: 'accuracy' }),
    /** Trials to start; `epochs` also caps the epochs trained by all trials together. */
    budget: z
      .object({ trials: z.number().int().min(1).max(1000).default(12), epochs: z.number().int().min(1).optional() })
      .strict()
      .default({ trials: 12 }),
    /** Trials training at once (each takes a train worker's slot, or `train.replicas` of them). */
    parallelism: z.number().int().min(1).max(64).default(2),
    /**
     * `random` search; `tpe`, a tree-structured Parzen estimator (Bergstra et al. 2011) that samples where the best
     * quarter of finished trials lies; `asha`, asynchronous successive halving (Li et al. 2020): random trials train
     * to `minEpochs`, and only the top 1/`reductionFactor` of each rung trains on, up to `train.epochs`.
     */
    algorithm: z.enum(TUNING_ALGORITHMS).default('asha'),
    asha: z
      .object({
        minEpochs: z.number().int().min(1).default(1),
        reductionFactor: z.number().int().min(2).max(10).default(3),
      })
      .strict()
      .default({ minEpochs: 1, reductionFactor: 3 }),
    tpe: z
      .object({
        /** Random trials before the estimator takes over (default: a third of the trials, 2 to 10). */
        startupTrials: z.number().int().min(1).optional(),
        /** Candidates drawn from the good trials' density per suggestion; the best ratio wins. */
        candidates: z.number().int().min(1).max(1000).default(24),
        /** The share of finished trials counted as good. */
        gamma: z.number().gt(0).lt(1).default(0.25),
      })
      .strict()
      .default({ candidates: 24, gamma: 0.25 }),
    /** Seeds the tuner's own random numbers: the same seed and results give the same trials. */
    seed: z.number().int().default(1),
  })
  .strict();
export type TuningSpec = z.output<typeof TuningSpecSchema>;

export const PipelineSpecSchema = z
  .object({
    name: identifier,
    description: z.string().optional(),
    data: DataSpecSchema,
    model: ModelSpecSchema,
    train: TrainSpecSchema.default(TrainSpecSchema.parse({})),
    evaluation: EvaluationSpecSchema.default(EvaluationSpecSchema.parse({})),
    deployment: DeploymentSpecSchema.default(DeploymentSpecSchema.parse({})),
    schedule: ScheduleSpecSchema.optional(),
    /** User steps, run in this order at their points. */
    steps: z.array(StepPlacementSchema).max(50).default([]),
    /** A hyperparameter study's search (`gantry tune`); a plain run ignores it. */
    tuning: TuningSpecSchema.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    // Replicas whose global batch is larger than the data would idle on empty shards: say so before anything starts.
    const limit = spec.data.limits.train;
    const globalBatch = spec.train.batchSize * spec.train.replicas;
    if (spec.train.replicas > 1 && limit !== undefined && globalBatch > limit) {
      ctx.addIssue({
        code: 'custom',
        path: ['train', 'replicas'],
        message:
          `${spec.train.replicas} replicas × batch ${spec.train.batchSize} = ${globalBatch} examples per ` +
          `step, more than the ${limit} training examples data.limits.train allows`,
      });
    }
  });

/** What an author writes (defaults may be left out). */
export type PipelineInput = z.input<typeof PipelineSpecSchema>;
/** What travels through Temporal (every default filled in). */
export type PipelineSpec = z.output<typeof PipelineSpecSchema>;
