import { definePipeline } from './define';

/**
 * Fashion-MNIST from Debian's dataset-fashion-mnist. The defaults (a 256-128 MLP with dropout,
 * Adam with cosine decay, 15 epochs over 54k images) reached 0.894 test accuracy here (0.886 with
 * a constant rate); the Fashion-MNIST paper's scikit-learn MLP reaches about 0.87.
 * `--set model.architecture=cnn --set train.epochs=12` (the cnn batch-normalises by default) reached 0.922 in 167 s
 * of training on the quiet 2-core machine (6 epochs: 0.920 in 88 s). It needs a native backend: the wasm
 * backend has no gradient kernel for convolutions, so the CNN trains on the plain-JS cpu backend there, at a few
 * samples/s.
 */
export default definePipeline({
  name: 'fashion-mnist',
  description: 'Retrain a Fashion-MNIST classifier and publish it when it beats the champion',
  data: { source: 'fashion-mnist', seed: 42, validationFraction: 0.1 },
  model: { name: 'fashion-mnist', architecture: 'mlp' },
  train: { epochs: 15, batchSize: 128, learningRate: 0.001, optimizer: 'adam', learningRateSchedule: 'cosine' },
  // Half a point of tolerance against the champion: dropout makes two identical runs differ by that much.
  evaluation: { minAccuracy: 0.85, minAccuracyDelta: -0.005 },
  // `gantry tune fashion-mnist`: ASHA over 12 random trials (rungs at 1, 3, 9 and 15 epochs), two at a time.
  tuning: {
    space: {
      'train.learningRate': { logUniform: [1e-4, 1e-2] },
      'train.batchSize': { choice: [64, 128, 256] },
      'model.options.hiddenUnits': { choice: [[128], [256, 128], [512, 256]] },
      'model.options.dropout': { uniform: [0, 0.5] },
    },
    objective: { metric: 'accuracy', goal: 'max' },
    budget: { trials: 12 },
    parallelism: 2,
    algorithm: 'asha',
    asha: { minEpochs: 1, reductionFactor: 3 },
  },
  deployment: {
    publish: true,
    alias: 'champion',
    // A canary sized for `make demo` on a 2-core machine: its load sends 150 predictions/s from
    // 200 sticky users with their true labels, so the canary sees ~15 requests/s at the first step
    // and the whole rollout takes ~17 s. For production, bake for minutes (the schema's defaults).
    // Without model servers (GANTRY_SERVERS, GANTRY_HOME/servers.json) it promotes at once.
    rollout: {
      steps: [
        { percent: 10, bake: '6s' },
        { percent: 50, bake: '4s' },
        { percent: 100, bake: '4s' },
      ],
      analysisInterval: '2s',
      // ~90 canary requests by the end of the first step (10 % of the users); fewer extends the bake.
      minRequests: 50,
      maxExtensions: 3,
      thresholds: {
        // The accuracy of 50-100 labelled predictions near 0.89 has a standard error of 3-4
        // points, so a 5-point limit would roll back a candidate as good as the champion about
        // one time in four (simulated over this schedule of looks); 10 points keeps that under
        // 2 % and still catches a broken model at once (wrong labels score ~0.1).
        minFeedback: 50,
        maxAccuracyDrop: 0.1,
        // Canary and champion share two busy cores with the load generator, Temporal and the
        // workers. Windows this small (~90 canary requests at the first step) are compared at the
        // p90 (a p99 needs minRequestsForP99, 1000): the p99 of 90 requests is their slowest one,
        // which one hiccup set to 8× the champion's in one demo run of four. 5× still catches a
        // version that is really slower.
        maxP99LatencyRatio: 5,
        // Two samples of ~50 and ~500 predictions of the same model differ by up to ~0.1 bits.
        maxPredictionDivergence: 0.15,
      },
    },
  },
});
