import { randomUUID } from 'node:crypto';
import { asServingError, invalidArgument, ServingError } from './errors';
import type { FeedbackStore } from './feedback';
import type { ServableHandle } from './handle';
import type { OtherSignature, Servable } from './loader';
import type { Logger } from './log';
import type { VersionManager } from './manager';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from './images';
import { UNKNOWN_LABEL } from './metric-names';
import type { Api, Protocol, Route, ServingMetrics } from './metrics';
import { labelledVersion } from './names';
import type { Router, VersionChoice } from './router';
import type { Signature } from './signature';
import { argmaxRows, checkFinite, type DenseTensor } from './tensors';

/**
 * The one predict path behind both front doors: route → acquire the version's handle → decode
 * the request against its signature → batcher → answer, with metrics, the request id, feedback
 * memory and shadow copies. A door only translates its wire format to and from DenseTensors.
 */

export interface Target extends VersionChoice {
  model: string;
  signatureName?: string;
}

export interface CallContext {
  api: Api;
  protocol: Protocol;
  clientKey?: string;
  requestId?: string;
}

export interface Answer {
  model: string;
  version: number;
  /** The server's id for this answer: the one feedback refers to. */
  requestId: string;
  /** The caller's x-request-id, when it sent a well-formed one: echoed back, never joined on. */
  clientRequestId?: string;
  signature: Signature;
  outputs: DenseTensor[];
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export class Inference {
  constructor(
    private readonly deps: {
      manager: VersionManager;
      router: Router;
      metrics: ServingMetrics;
      feedback: FeedbackStore;
      requestTimeoutMs: number;
      maxRowsPerRequest: number;
      /** Bounds on the encoded images of a request to an image version (serving/images.ts). */
      imageLimits?: ImageLimits;
      log: Logger;
    },
  ) {}

  get maxRows(): number {
    return this.deps.maxRowsPerRequest;
  }

  get imageLimits(): ImageLimits {
    return this.deps.imageLimits ?? DEFAULT_IMAGE_LIMITS;
  }

  /** Routes and acquires; retries once when the picked version began unloading in between. */
  acquire(target: Target, clientKey?: string): ServableHandle {
    for (let attempt = 0; attempt < 3; attempt++) {
      const { version } = this.deps.router.pick(target.model, target, clientKey);
      const handle = this.deps.manager.acquire(target.model, version);
      if (handle) return handle;
    }
    throw new ServingError('UNAVAILABLE', `model "${target.model}": the chosen version is unloading; retry`);
  }

  /**
   * Runs one predict or classify call. `decode` turns the request into input tensors once the
   * version (and so the signature) is known; it may be async (images are decoded off the event loop), the
   * version's handle being held meanwhile.
   */
  async run(
    target: Target,
    context: CallContext,
    decode: (signature: Signature) => DenseTensor[] | Promise<DenseTensor[]>,
  ): Promise<Answer> {
    const started = performance.now();
    const { metrics } = this.deps;
    let version: string | undefined;
    try {
      const handle = this.acquire(target, context.clientKey);
      version = String(handle.version);
      let inputs: DenseTensor[];
      let other: OtherSignature | undefined;
      try {
        other = chooseSignature(handle.servable, target.signatureName);
        const chosen = other?.signature ?? handle.servable.signature;
        if (chosen.unsupported) throw new ServingError('UNIMPLEMENTED', chosen.unsupported);
        const decoded = decode(chosen);
        inputs = decoded instanceof Promise ? await decoded : decoded;
        // Every door and encoding ends here: one check for NaN and ±Infinity in float inputs (tensors.ts).
        checkFinite(inputs, chosen);
      } catch (error) {
        handle.release();
        throw error;
      }
      let work: DenseTensor[] | Promise<DenseTensor[]>;
      try {
        // A SavedModel's other signatures run unbatched (the batcher merges rows of the default one).
        work = other ? other.run(inputs) : handle.batcher.submit(inputs);
      } catch (error) {
        handle.release();
        throw error;
      }
      let outputs: DenseTensor[];
      if (work instanceof Promise) {
        // Queued: the handle is held until the batch ran, even if this request times out before.
        void work.then(
          () => handle.release(),
          () => handle.release(),
        );
        outputs = await withDeadline(work, this.deps.requestTimeoutMs);
      } else {
        // Ran on the spot (an idle version): nothing to wait for.
        handle.release();
        outputs = work;
      }
      // The server's own id, random: feedback is joined on it, so no caller can name (and so overwrite or
      // label) another's prediction. A caller's x-request-id is only echoed back for its tracing.
      const requestId = randomUUID();
      const clientRequestId =
        context.requestId !== undefined && REQUEST_ID.test(context.requestId) ? context.requestId : undefined;
      const signature = other?.signature ?? handle.servable.signature;
      if (!other && signature.classLabels && outputs.length === 1) {
        const classes = argmaxRows(outputs[0]!);
        for (const c of classes)
          metrics.predictedClass.inc({
            model: target.model,
            version,
            class: signature.classLabels[c] ?? String(c),
            route: routeOf(target),
          });
        this.deps.feedback.remember(requestId, target.model, handle.version, classes);
        if (target.version === undefined && target.label === undefined)
          this.maybeShadow(target.model, handle.version, inputs, classes);
      }
      if ((signature.records ?? signature.images)?.outputs.task === 'regression' && outputs.length === 1)
        this.deps.feedback.remember(requestId, target.model, handle.version, Float32Array.from(outputs[0]!.data));
      metrics.requests.inc({
        model: target.model,
        version,
        api: context.api,
        protocol: context.protocol,
        status: 'OK',
        route: routeOf(target),
      });
      metrics.latency.observe(
        { model: target.model, version, api: context.api, protocol: context.protocol, route: routeOf(target) },
        (performance.now() - started) / 1000,
      );
      return { model: target.model, version: handle.version, requestId, clientRequestId, signature, outputs };
    } catch (error) {
      const failure = asServingError(error);
      this.count(target, context, failure, version);
      throw failure;
    }
  }

  /** Counts the out-of-vocabulary values of a records request (column names come from the preprocessing). */
  countOutOfVocabulary(model: string, counts: ReadonlyMap<string, number>): void {
    for (const [column, n] of counts)
      this.deps.metrics.outOfVocabulary.inc({ model: this.modelLabel(model), column }, n);
  }

  /**
   * Counts a failed request: in run(), or outside it (a status or metadata call). `version` is the version that
   * was acquired, if one was; else the label is the version the request named when this server knows it, '' when
   * it named none (the router had not picked one yet), and UNKNOWN_LABEL for a version or label it does not know.
   */
  count(target: Target, context: CallContext, error: ServingError, version?: string): void {
    this.deps.metrics.requests.inc({
      // A version was acquired only for a model served here.
      model: version !== undefined ? target.model : this.modelLabel(target.model),
      version: version ?? this.namedVersionLabel(target),
      api: context.api,
      protocol: context.protocol,
      status: error.code,
      route: routeOf(target),
    });
  }

  /** A client-supplied model name as a metric label: itself when served here, else the one UNKNOWN_LABEL series. */
  private modelLabel(model: string): string {
    return this.deps.manager.hasModel(model) ? model : UNKNOWN_LABEL;
  }

  private namedVersionLabel(target: Target): string {
    if (target.version === undefined && target.label === undefined) return '';
    const { manager } = this.deps;
    if (!manager.hasModel(target.model)) return UNKNOWN_LABEL;
    const version = target.version ?? labelledVersion(manager.config(target.model)?.version_labels, target.label ?? '');
    return version !== undefined && manager.status(target.model).some((s) => s.version === version)
      ? String(version)
      : UNKNOWN_LABEL;
  }

  /**
   * Sends a copy to the shadow version, if this request is picked. Never awaited and never
   * allowed to fail the served answer: the shadow's answers are only compared and counted.
   */
  private maybeShadow(model: string, served: number, inputs: DenseTensor[], servedClasses: Int32Array): void {
    const { router, manager, metrics, log } = this.deps;
    const version = router.shadow(model, served);
    if (version === undefined) return;
    const labels = { model, version: String(version) };
    const handle = manager.acquire(model, version);
    if (!handle) {
      metrics.shadow.inc({ ...labels, outcome: 'error' });
      return;
    }
    const started = performance.now();
    Promise.resolve()
      .then(() => handle.batcher.submit(inputs))
      .then((outputs) => {
        metrics.shadowLatency.observe(labels, (performance.now() - started) / 1000);
        const classes = argmaxRows(outputs[0]!);
        const agree = classes.every((c, i) => c === servedClasses[i]);
        metrics.shadow.inc({ ...labels, outcome: agree ? 'agree' : 'disagree' });
      })
      .catch((error: Error) => {
        metrics.shadow.inc({ ...labels, outcome: 'error' });
        log.warn(`shadow request to model ${model} version ${version} failed: ${error.message}`);
      })
      .finally(() => handle.release());
  }
}

/**
 * The signature a request names: undefined for the servable's own (`signature`, also when unnamed),
 * else one of a SavedModel's other signatures; an unknown name is INVALID_ARGUMENT listing the names.
 */
export function chooseSignature(servable: Servable, name: string | undefined): OtherSignature | undefined {
  if (!name || name === servable.signature.name) return undefined;
  const other = servable.otherSignatures?.get(name);
  if (other) return other;
  const names = [servable.signature.name, ...(servable.otherSignatures?.keys() ?? [])];
  throw invalidArgument(
    `signature_name "${name}" not found; this model serves ${names.map((n) => `"${n}"`).join(', ')}`,
  );
}

/** Whether the caller chose the version (a version or label in the path) or the router did. */
function routeOf(target: Target): Route {
  return target.version !== undefined || target.label !== undefined ? 'pinned' : 'routed';
}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new ServingError('DEADLINE_EXCEEDED', `the request took longer than ${ms} ms`)),
      ms,
    );
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
