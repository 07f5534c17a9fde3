/**
 * The two ways training can go wrong that no retry fixes: activities/failures.ts turns each into
 * a non-retryable Temporal failure whose type is the class name.
 */

/** The loss of a step was NaN or infinite: the optimisation has blown up. */
export class TrainingDiverged extends Error {
  override readonly name = 'TrainingDiverged';

  constructor(
    /** 1-based, as in EpochMetrics and the progress reports. */
    readonly epoch: number,
    /** 1-based step within the epoch. */
    readonly step: number,
    /** The step's mean loss (NaN or ±Infinity). */
    readonly loss: number,
  ) {
    super(`training diverged: loss is ${loss} at epoch ${epoch}, step ${step}`);
  }
}

/** The replicas of a data-parallel job no longer hold identical weights after a step. */
export class ReplicasDiverged extends Error {
  override readonly name = 'ReplicasDiverged';
}
