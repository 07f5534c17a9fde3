import type { RegisterRequest } from '../../workflows/api';

/** A registration of run `runId`'s model (blessed unless told otherwise), as the pipeline sends it. */
export const registerRequest = (runId: string, blessed = true): RegisterRequest => ({
  artifactUri: `file:///artifacts/${runId}`,
  metrics: { testAccuracy: 0.9, testLoss: 0.3, perClassAccuracy: [] },
  lineage: { runId, datasetFingerprint: 'fp', spec: {}, parentVersion: null, gitCommit: null, backend: 'wasm' },
  blessed,
  reasons: [],
});
