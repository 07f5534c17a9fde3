/**
 * Where a run's time goes (issue 19): per stage, the workflow's own view (scheduled → result, in workflow time) and
 * the activity's (its wait in the task queue, its run time and the named parts of that run). Plain JSON: it is in
 * the run's result, its progress query and the activities' results.
 */

/** One activity attempt as the activity measured it. */
export interface ActivityTiming {
  /** This attempt's schedule time (Temporal's) → the activity function started on a worker, in ms. */
  queueMs: number;
  /** The activity function's run, in ms. */
  runMs: number;
  attempt: number;
  /** Named parts of the run in the order they ran, in ms (the trainer's setup, load data, epochs, checkpoint, save). */
  parts?: Record<string, number>;
}

/** What an activity that measures itself returns beside its result. */
export interface Timed {
  timing?: ActivityTiming;
}

/** One stage or user step of a run. */
export interface StageTiming extends Partial<ActivityTiming> {
  /** The stage's name (`train`), or a user step's label (`step min-rows (after-ingest)`). */
  stage: string;
  /** Scheduled → its result handled, in workflow time (ms): the queue wait, the run and Temporal's round trips. */
  wallMs: number;
}

export interface RunTimings {
  /** The workflow's start → its last stage's result, in workflow time (ms). */
  totalMs: number;
  stages: StageTiming[];
}
