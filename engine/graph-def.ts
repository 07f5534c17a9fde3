import { createRequire } from 'node:module';
import path from 'node:path';
import type protobufType from 'protobufjs';
import { TENSORFLOW_PROTO_ROOT } from './protos';

/**
 * A TensorFlow GraphDef built node by node, and the SavedModel file that carries it. TensorFlow's
 * executor runs such a graph with the optimisations Keras gets from `tf.function` (oneDNN fused
 * kernels, inter-op parallelism, no per-op round trip through JavaScript), which eager execution —
 * all tfjs-node otherwise offers — cannot have.
 */

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs') as typeof protobufType;

let root: protobufType.Root | undefined;
function types(): protobufType.Root {
  if (!root) {
    const loaded = new protobuf.Root();
    // Imports name upstream paths ("tensorflow/core/..."), relative to the include directory.
    loaded.resolvePath = (_origin, target) => path.join(TENSORFLOW_PROTO_ROOT, target);
    root = loaded.loadSync('tensorflow/core/protobuf/saved_model.proto');
  }
  return root;
}

export type DType = 'DT_FLOAT' | 'DT_INT32' | 'DT_INT64' | 'DT_BOOL' | 'DT_RESOURCE';

/** An AttrValue as protobufjs's `fromObject` takes it. */
export type AttrValue = Record<string, unknown>;

export const attr = {
  type: (dtype: DType): AttrValue => ({ type: dtype }),
  int: (i: number): AttrValue => ({ i }),
  float: (f: number): AttrValue => ({ f }),
  bool: (b: boolean): AttrValue => ({ b }),
  str: (s: string): AttrValue => ({ s: Buffer.from(s) }),
  ints: (i: number[]): AttrValue => ({ list: { i } }),
  strs: (s: string[]): AttrValue => ({ list: { s: s.map((v) => Buffer.from(v)) } }),
  /** A shape; -1 is an unknown dimension (the batch). */
  shape: (dims: number[]): AttrValue => ({ shape: { dim: dims.map((size) => ({ size })) } }),
  floatTensor: (values: number[], dims: number[]): AttrValue => ({
    tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: dims.map((size) => ({ size })) }, floatVal: values },
  }),
  intTensor: (values: number[], dims: number[]): AttrValue => ({
    tensor: { dtype: 'DT_INT32', tensorShape: { dim: dims.map((size) => ({ size })) }, intVal: values },
  }),
};

/** One tensor of a signature: the graph tensor it names ("node:0"), its dtype and shape (-1: any size). */
export interface TensorInfoSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

/** A SignatureDef: the caller's keys for the graph's inputs and outputs, and the method (e.g. Predict). */
export interface SignatureSpec {
  methodName: string;
  inputs: Record<string, TensorInfoSpec>;
  outputs: Record<string, TensorInfoSpec>;
}

function signatureDefOf(signature: SignatureSpec): Record<string, unknown> {
  const infos = (specs: Record<string, TensorInfoSpec>) =>
    Object.fromEntries(
      Object.entries(specs).map(([key, t]) => [
        key,
        { name: t.name, dtype: t.dtype, tensorShape: { dim: t.shape.map((size) => ({ size })) } },
      ]),
    );
  return { methodName: signature.methodName, inputs: infos(signature.inputs), outputs: infos(signature.outputs) };
}

interface NodeDef {
  name: string;
  op: string;
  input: string[];
  attr: Record<string, AttrValue>;
}

export class GraphBuilder {
  private readonly nodes: NodeDef[] = [];
  private readonly used = new Set<string>();

  /** Adds a node and returns its name, which is also the name of its first output. */
  op(
    op: string,
    name: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    controlInputs: string[] = [],
  ): string {
    if (this.used.has(name)) throw new Error(`graph node ${name} defined twice`);
    this.used.add(name);
    // Control inputs name a node, not a tensor: "^node", without an output index.
    this.nodes.push({ name, op, input: [...inputs, ...controlInputs.map((c) => `^${c.split(':')[0]}`)], attr: attrs });
    return name;
  }

  placeholder(name: string, dtype: DType, dims: number[]): string {
    return this.op('Placeholder', name, [], { dtype: attr.type(dtype), shape: attr.shape(dims) });
  }

  floats(name: string, values: number[], dims: number[] = []): string {
    return this.op('Const', name, [], { dtype: attr.type('DT_FLOAT'), value: attr.floatTensor(values, dims) });
  }

  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    return this.op('Const', name, [], { dtype: attr.type('DT_INT32'), value: attr.intTensor(values, dims) });
  }

  /** A fetchable scalar that exists only to make `after` run: runSavedModel fetches, it has no targets. */
  done(name: string, after: string[]): string {
    const zero = this.floats(`${name}/zero`, [0]);
    return this.op('Identity', name, [zero], { T: attr.type('DT_FLOAT') }, after);
  }

  /**
   * The SavedModel file (`saved_model.pb`) holding this graph under one tag set, with the SignatureDefs
   * TensorFlow Serving and `tf.saved_model.load(...).signatures` look callers' names up in (none for a
   * graph only Gantry runs, by node name).
   */
  savedModel(tags: string[], signatures: Record<string, SignatureSpec> = {}): Uint8Array {
    const SavedModel = types().lookupType('tensorflow.SavedModel');
    const message = SavedModel.fromObject({
      savedModelSchemaVersion: 1,
      metaGraphs: [
        {
          metaInfoDef: { metaGraphVersion: 'gantry', tags, tensorflowVersion: '2.20.0' },
          // Producer 1205 (TensorFlow 2.x): a GraphDef version every libtensorflow 2 reads.
          graphDef: { node: this.nodes, versions: { producer: 1205, minConsumer: 0 } },
          signatureDef: Object.fromEntries(
            Object.entries(signatures).map(([key, signature]) => [key, signatureDefOf(signature)]),
          ),
        },
      ],
    });
    return SavedModel.encode(message).finish();
  }
}
