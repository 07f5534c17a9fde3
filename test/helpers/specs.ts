import { validatePipeline, type PipelineInput, type PipelineSpec } from '../../pipelines';
import fashionMnist from '../../pipelines/fashion-mnist';

/**
 * The fashion-mnist pipeline on a slice of the real data: small enough for a test, real enough
 * to learn (2,000 images reach about 75% in one epoch).
 */
export function sliceSpec(overrides: { [K in keyof PipelineInput]?: Partial<PipelineInput[K]> } = {}): PipelineSpec {
  return validatePipeline({
    ...fashionMnist,
    ...overrides,
    data: { ...fashionMnist.data, limits: { train: 2000, test: 500 }, ...overrides.data },
    train: { ...fashionMnist.train, epochs: 1, ...overrides.train },
    evaluation: { ...fashionMnist.evaluation, minAccuracy: 0.5, ...overrides.evaluation },
    model: { ...fashionMnist.model, ...overrides.model },
    deployment: { ...fashionMnist.deployment, ...overrides.deployment },
  });
}
