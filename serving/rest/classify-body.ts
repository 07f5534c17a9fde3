import { z } from 'zod';
import { invalidArgument, ServingError } from '../errors';
import { examplesTensor, jsonFeatures } from '../examples';
import { CLASSIFY_METHOD, REGRESS_METHOD, rowSize, type Signature, takesExamples } from '../signature';
import { parsePredictBody, type DenseTensor } from '../tensors';

/** A :classify body, TF Serving's: examples (features by input name), an optional shared context. */
export const ClassifyBodySchema = z
  .object({
    signature_name: z.string().optional(),
    context: z.record(z.string(), z.unknown()).optional(),
    examples: z.array(z.record(z.string(), z.unknown())).min(1),
  })
  .loose();

export type ClassifyBody = z.infer<typeof ClassifyBodySchema>;

/**
 * The model inputs of a :classify or :regress body: a SavedModel's classify/regress signature takes the examples
 * as serialized tf.Examples; otherwise :classify needs a classifier and feeds the features as its inputs, and
 * :regress is refused with the reason.
 */
export function classifyInputs(body: ClassifyBody, model: string, maxRows: number, verb: 'classify' | 'regress') {
  return (signature: Signature): DenseTensor[] => {
    const method = verb === 'classify' ? CLASSIFY_METHOD : REGRESS_METHOD;
    if (takesExamples(signature)) {
      if (signature.methodName !== method)
        throw invalidArgument(
          `signature "${signature.name}" of model "${model}" is a ${signature.methodName} signature; ` +
            `:${verb} needs a ${method} one (name it with signature_name)`,
        );
      const wants = signature.exampleFeatures;
      const context = body.context ? jsonFeatures(body.context, 'context', wants) : undefined;
      const examples = body.examples.map((example, i) => jsonFeatures(example, `examples[${i}]`, wants));
      return [examplesTensor(examples, context, maxRows)];
    }
    if (verb === 'regress')
      throw new ServingError(
        'UNIMPLEMENTED',
        `regress is served for a SavedModel's regression signature (method ${REGRESS_METHOD}); signature ` +
          `"${signature.name}" of model "${model}" is not one; use :predict`,
      );
    if (!signature.classLabels)
      throw invalidArgument(`model "${model}" is not a classifier (one output of shape [-1, K]); use :predict`);
    return exampleRows(body.examples, body.context, signature, maxRows);
  };
}

/** One example's value for one input: a flat list (tf.Example style) or the row's nested shape. */
function exampleRows(
  examples: Record<string, unknown>[],
  context: Record<string, unknown> | undefined,
  signature: Signature,
  maxRows: number,
): DenseTensor[] {
  if (examples.length > maxRows)
    throw invalidArgument(`examples: ${examples.length} examples exceed the limit of ${maxRows} per request`);
  const instances = examples.map((example, i) => {
    const merged = { ...context, ...example };
    return Object.fromEntries(
      Object.entries(merged).map(([key, value]) => {
        const spec = signature.inputs.find((s) => s.key === key);
        if (!spec)
          throw invalidArgument(
            `examples[${i}]: unknown feature "${key}"; the signature's inputs are ` +
              signature.inputs.map((s) => `"${s.key}"`).join(', '),
          );
        const flat =
          Array.isArray(value) &&
          value.length === rowSize(spec) &&
          spec.shape.length > 2 &&
          typeof value[0] === 'number';
        return [key, flat ? reshape(value as number[], spec.shape.slice(1)) : value];
      }),
    );
  });
  return parsePredictBody({ instances }, signature, maxRows).inputs;
}

function reshape(flat: number[], dims: number[]): unknown {
  if (dims.length === 1) return flat;
  const stride = dims.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: dims[0]! }, (_, i) => reshape(flat.slice(i * stride, (i + 1) * stride), dims.slice(1)));
}
