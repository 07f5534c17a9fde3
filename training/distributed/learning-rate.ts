import { learningRateAt, type LearningRateSchedule } from '../optimizers';

export interface ScalingSpec {
  learningRate: number;
  learningRateSchedule: LearningRateSchedule;
  learningRateScaling: 'none' | 'linear';
  warmupEpochs: number;
  epochs: number;
}

/**
 * The learning rate of a step of a job with `worldSize` replicas. With `linear` scaling the base
 * rate is multiplied by the number of replicas (the global batch grew by that factor; Goyal et
 * al. 2017), reached by a linear ramp from the unscaled rate over `warmupEpochs`; the epoch
 * schedule (constant or cosine) then applies on top. A function of (epoch, progress) only, so a
 * resumed attempt uses the rates the lost one would have.
 */
export function scaledLearningRate(spec: ScalingSpec, worldSize: number, epoch: number, epochProgress: number): number {
  const factor = spec.learningRateScaling === 'linear' ? worldSize : 1;
  const done = epoch + epochProgress;
  const warm =
    spec.warmupEpochs > 0 && done < spec.warmupEpochs ? 1 + (factor - 1) * (done / spec.warmupEpochs) : factor;
  return learningRateAt(spec.learningRateSchedule, spec.learningRate * warm, epoch, spec.epochs);
}
