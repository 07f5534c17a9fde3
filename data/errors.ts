/**
 * A problem with the data itself (a missing, corrupt or inconsistent file), as opposed to a bug or
 * a transient failure. It always names the file and the reason, so an operator reading a failed
 * ingest knows which file to fix without opening a stack trace. Retrying does not fix bad data, so
 * callers (the ingest activity) may treat it as non-retryable.
 */
export class DatasetError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'DatasetError';
  }
}
