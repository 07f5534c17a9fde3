import type { Batcher } from './batcher';
import type { Servable } from './loader';

/**
 * What a request holds while it uses a version. The manager unloads a version by closing its
 * handle: new requests are refused at once, and the model is disposed only when the last
 * request that acquired it has released it — so an unloading version drains instead of failing
 * the requests in flight.
 */
export class ServableHandle {
  private refs = 0;
  private closing = false;
  private drained: (() => void) | undefined;

  constructor(
    readonly model: string,
    readonly version: number,
    readonly servable: Servable,
    readonly batcher: Batcher,
  ) {}

  /** False once the version is unloading: the caller must pick another version. */
  tryAcquire(): boolean {
    if (this.closing) return false;
    this.refs++;
    return true;
  }

  release(): void {
    this.refs--;
    if (this.refs === 0) this.drained?.();
  }

  get inFlight(): number {
    return this.refs;
  }

  /** Refuses new requests, waits for the ones in flight, then frees the model's tensors. */
  async close(): Promise<void> {
    this.closing = true;
    this.batcher.close();
    if (this.refs > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    this.servable.dispose();
  }
}
