import type { RowReader, SourceRow } from './rows';
import { MalformedRow } from './rows';

/** What a project's own tabular source gives (pipelines/project.ts's TabularSourceDefinition, structurally). */
export interface StreamedTabularSource {
  name: string;
  stream(path: string): AsyncIterable<Record<string, unknown>>;
}

/**
 * A RowReader over a user's `stream(path)`: each record becomes a SourceRow named `<source>#<n>`; something that is
 * not a plain object is a MalformedRow, so the spec's onMalformed applies to a user's source as to a file.
 */
export function rowReaderOf(source: StreamedTabularSource): RowReader {
  return async function* (location, options = {}) {
    let n = 0;
    for await (const record of source.stream(location)) {
      n += 1;
      const where = `${source.name}#${n}`;
      if (record === null || typeof record !== 'object' || Array.isArray(record)) {
        yield new MalformedRow(where, 'is not a record (an object of column values)');
      } else yield { values: record, where } satisfies SourceRow;
      if (n === options.maxRows) return;
    }
  };
}
