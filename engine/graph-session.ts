import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { tf } from './backend';
import { GraphUnsupported } from './forward-graph';
import type { GraphBuilder } from './graph-def';

/**
 * A TensorFlow graph loaded as one libtensorflow session, through tfjs-node's SavedModel binding:
 * the graph is written as a temporary SavedModel, loaded, and the file deleted (the session holds
 * the graph, and any weights frozen into it, in memory; the file was only the way in). The trainer's
 * step and the model server's forward pass both run this way.
 */

/** The slice of tfjs-node's backend that loads and runs a SavedModel session. */
interface SessionBackend {
  loadSavedModelMetaGraph(dir: string, tags: string): number;
  runSavedModel(
    id: number,
    inputs: tfType.Tensor[],
    inputInfos: { name: string }[],
    outputNames: string[],
  ): tfType.Tensor[];
  deleteSavedModel(id: number): void;
}

let open = 0;

/** Graph sessions open in this thread (their weights are not in tfjs's tensor count). */
export function openGraphSessions(): number {
  return open;
}

/** Why this process cannot run graph sessions (only tfjs-node's backend has them), or undefined if it can. */
function graphSessionsUnavailable(): string | undefined {
  return tf.getBackend() === 'tensorflow' ? undefined : `the ${tf.getBackend()} backend has no graph sessions`;
}

export class GraphSession {
  private closed = false;

  private constructor(
    private readonly backend: SessionBackend,
    private readonly id: number,
  ) {}

  /** Loads `graph` under the tag set `tag` (it also names the temporary folder). Native backend only. */
  static async open(graph: GraphBuilder, tag: string): Promise<GraphSession> {
    const backend = tf.backend() as unknown as SessionBackend;
    const dir = await mkdtemp(path.join(os.tmpdir(), `${tag}-graph-`));
    try {
      await writeFile(path.join(dir, 'saved_model.pb'), graph.savedModel([tag]));
      const id = backend.loadSavedModelMetaGraph(dir, tag);
      open++;
      return new GraphSession(backend, id);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Compiles a graph and opens it as a session, or says why it cannot: not the native backend, or the compiler
   * (which throws GraphUnsupported) lacks a layer or optimizer. The trainer's step and the server's forward pass
   * both start this way.
   */
  static async compileAndOpen<Compiled extends { graph: GraphBuilder }>(
    tag: string,
    compile: () => Compiled,
  ): Promise<{ compiled: Compiled; session: GraphSession } | { unsupported: string }> {
    const unavailable = graphSessionsUnavailable();
    if (unavailable) return { unsupported: unavailable };
    let compiled: Compiled;
    try {
      compiled = compile();
    } catch (error) {
      if (error instanceof GraphUnsupported) return { unsupported: error.message };
      throw error;
    }
    return { compiled, session: await GraphSession.open(compiled.graph, tag) };
  }

  /**
   * The same feeds and fetches run again and again (a servable's forward pass): their names are bound once, so a
   * call allocates nothing but the binding's own arrays. The caller disposes what comes back.
   */
  runner(feedNames: string[], fetches: string[]): (inputs: tfType.Tensor[]) => tfType.Tensor[] {
    const inputInfos = feedNames.map((name) => ({ name }));
    return (inputs) => this.backend.runSavedModel(this.id, inputs, inputInfos, fetches);
  }

  /** Feeds placeholders by name and fetches nodes by name; the caller disposes what comes back. */
  run(feeds: [string, tfType.Tensor][], fetches: string[]): tfType.Tensor[] {
    return this.backend.runSavedModel(
      this.id,
      feeds.map(([, t]) => t),
      feeds.map(([name]) => ({ name })),
      fetches,
    );
  }

  /** Frees the session and the graph it holds; a second call does nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.deleteSavedModel(this.id);
    open--;
  }
}
