import * as tf from '@tensorflow/tfjs';
import type * as tfType from '@tensorflow/tfjs';

/**
 * Faster kernels for the native (`tensorflow`) backend, installed when it is selected.
 *
 * tfjs-node builds some kernels out of many small eager ops where libtensorflow has one:
 * its `Step` (the ReLU derivative, used by every ReLU gradient) allocates a tensor of ones and a
 * filled tensor of the input's shape, then runs IsNan, Greater, Select and Select — on a CNN
 * that is over a third of each training step. Here Step becomes Relu(Sign(x)) (two ops, NaN
 * kept, as tfjs defines it), and ReLU's gradient becomes TensorFlow's own ReluGrad, the op
 * Keras uses. Other backends keep tfjs's definitions.
 *
 * Max pooling's gradient: TensorFlow's generic MaxPoolGrad re-runs the pooling to find each
 * window's maximum and takes ~10 ms on the first CNN layer. Keras never runs it — TensorFlow's
 * graph rewrite swaps in oneDNN's pooling, whose forward pass records the arg-max positions in a
 * workspace that the backward pass reads. Eager execution (what tfjs-node does) skips that
 * rewrite, so while a gradient tape records, MaxPool here runs the same oneDNN ops by name and
 * keeps the workspace for MaxPoolGrad (5× faster, same result). Anything unusual (other dtypes,
 * a libtensorflow built without oneDNN) takes tfjs-node's own kernels.
 */

const ENGINE_ID = 'tensorflow';
const RELU_GRAD = 'GantryReluGrad';

/** The part of tfjs-node's backend these kernels call: run one TensorFlow op eagerly. */
interface EagerOpBackend {
  executeSingleOutput(op: string, attrs: unknown[], inputs: tfType.TensorInfo[]): tfType.Tensor;
}
interface EagerMultiOpBackend extends EagerOpBackend {
  executeMultipleOutputs(op: string, attrs: unknown[], inputs: tfType.TensorInfo[], outputs: number): tfType.Tensor[];
  tensorMap: { has(dataId: object): boolean };
}
interface OpAttr {
  name: string;
  type: unknown;
  value: unknown;
}

type NodeBinding = Record<
  'TF_ATTR_TYPE' | 'TF_ATTR_INT' | 'TF_ATTR_STRING' | 'TF_ATTR_BOOL' | 'TF_FLOAT' | 'TF_INT32',
  unknown
>;

let installed = false;

/** A `T` (element type) attribute, as tfjs-node's own kernels build it. */
function typeAttr(binding: NodeBinding, dtype: tfType.DataType): OpAttr {
  const tfDType = dtype === 'int32' ? binding.TF_INT32 : binding.TF_FLOAT;
  return { name: 'T', type: binding.TF_ATTR_TYPE, value: tfDType };
}

/** Puts a kernel where tfjs-node's own one of that name was (registerKernel refuses a name in use). */
function replaceKernel(kernel: Omit<tfType.KernelConfig, 'backendName'>): void {
  tf.unregisterKernel(kernel.kernelName, ENGINE_ID);
  tf.registerKernel({ ...kernel, backendName: ENGINE_ID });
}

/** Installs the kernels once per process; call after the `tensorflow` backend initialised. */
export function installNativeKernels(): void {
  if (installed) return;
  const backend = tf.findBackend(ENGINE_ID) as unknown as { binding?: NodeBinding } | null;
  if (!backend?.binding) return;
  const binding = backend.binding;
  installed = true;

  const originalStep = tf.getKernel('Step', ENGINE_ID);
  if (originalStep) {
    replaceKernel({
      kernelName: 'Step',
      kernelFunc: (args) => {
        const { x } = args.inputs as { x: tfType.TensorInfo };
        const alpha = (args.attrs as { alpha?: number } | undefined)?.alpha ?? 0;
        if (alpha !== 0 || (x.dtype !== 'float32' && x.dtype !== 'int32')) return originalStep.kernelFunc(args);
        const backend = args.backend as unknown as EagerOpBackend;
        const attrs = [typeAttr(binding, x.dtype)];
        const sign = backend.executeSingleOutput('Sign', attrs, [x]);
        const step = backend.executeSingleOutput('Relu', attrs, [sign]);
        sign.dispose();
        return step;
      },
    });
  }

  installOneDnnMaxPool(binding);

  tf.registerKernel({
    kernelName: RELU_GRAD,
    backendName: ENGINE_ID,
    kernelFunc: (args) => {
      const { dy, x } = args.inputs as { dy: tfType.TensorInfo; x: tfType.TensorInfo };
      const backend = args.backend as unknown as EagerOpBackend;
      return backend.executeSingleOutput('ReluGrad', [typeAttr(binding, 'float32')], [dy, x]);
    },
  });

  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as tfType.Tensor[];
      const gradient = dy as tfType.Tensor;
      if (tf.getBackend() === ENGINE_ID && x!.dtype === 'float32') {
        return { x: () => tf.engine().runKernel(RELU_GRAD, { dy: gradient, x: x! }) as tfType.Tensor };
      }
      // tfjs's own definition, for every other backend.
      return { x: () => tf.mul(gradient, tf.cast(tf.step(x!), 'float32')) };
    },
  });
}

interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** oneDNN's pooling ops, addressed the way TensorFlow's own graph rewrite addresses them. */
function oneDnnPoolAttrs(binding: NodeBinding, x: tfType.TensorInfo, attrs: PoolAttrs): OpAttr[] | undefined {
  if (x.dtype !== 'float32' || x.shape.length !== 4) return undefined;
  const info = tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  if (info.padInfo.type !== 'VALID' && info.padInfo.type !== 'SAME') return undefined;
  return [
    typeAttr(binding, 'float32'),
    { name: 'ksize', type: binding.TF_ATTR_INT, value: [1, info.filterHeight, info.filterWidth, 1] },
    { name: 'strides', type: binding.TF_ATTR_INT, value: [1, info.strideHeight, info.strideWidth, 1] },
    { name: 'padding', type: binding.TF_ATTR_STRING, value: info.padInfo.type },
    { name: 'data_format', type: binding.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'workspace_enabled', type: binding.TF_ATTR_BOOL, value: false },
    // The kernel label TensorFlow's rewrite sets on oneDNN ops that keep the plain tensor layout.
    { name: '_kernel', type: binding.TF_ATTR_STRING, value: 'MklNameChangeOp' },
  ];
}

function installOneDnnMaxPool(binding: NodeBinding): void {
  const originalPool = tf.getKernel('MaxPool', ENGINE_ID);
  const originalGrad = tf.getKernel('MaxPoolGrad', ENGINE_ID);
  if (!originalPool || !originalGrad) return;
  /** Arg-max workspaces of pooled outputs a tape may still differentiate, by output data id. */
  const workspaces = new Map<object, tfType.Tensor>();
  let oneDnnWorks = true;
  // Inside a kernel `isTapeOn()` is always false (it excludes nested kernels): read the depth.
  const engine = tf.engine() as unknown as { state: { gradientDepth: number } };

  replaceKernel({
    kernelName: 'MaxPool',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tfType.TensorInfo };
      const backend = args.backend as unknown as EagerMultiOpBackend;
      // Workspaces of outputs already disposed (their tape is gone) are freed here.
      for (const [dataId, workspace] of workspaces) {
        if (!backend.tensorMap.has(dataId)) {
          workspace.dispose();
          workspaces.delete(dataId);
        }
      }
      const attrs =
        oneDnnWorks && engine.state.gradientDepth > 0
          ? oneDnnPoolAttrs(binding, x, args.attrs as unknown as PoolAttrs)
          : undefined;
      if (!attrs) return originalPool.kernelFunc(args);
      let outputs: tfType.Tensor[];
      try {
        outputs = backend.executeMultipleOutputs('_MklNativeMaxPool', attrs, [x], 2);
      } catch {
        oneDnnWorks = false; // e.g. a libtensorflow built without oneDNN
        return originalPool.kernelFunc(args);
      }
      const [output, workspace] = outputs as [tfType.Tensor, tfType.Tensor];
      workspaces.set(output.dataId, tf.keep(workspace));
      return output;
    },
  });

  replaceKernel({
    kernelName: 'MaxPoolGrad',
    kernelFunc: (args) => {
      const { dy, input, output } = args.inputs as Record<'dy' | 'input' | 'output', tfType.TensorInfo>;
      const workspace = workspaces.get(output.dataId);
      const attrs = workspace && oneDnnPoolAttrs(binding, input, args.attrs as unknown as PoolAttrs);
      if (!attrs) return originalGrad.kernelFunc(args);
      const backend = args.backend as unknown as EagerOpBackend;
      return backend.executeSingleOutput('_MklNativeMaxPoolGrad', attrs, [input, output, dy, workspace]);
    },
  });
}
