import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import proto from '@temporalio/proto';
import { z } from 'zod';
import { PROJECT_ROOT } from '../../control/temporal-binary';

/** The recordings of scripts/record-histories.ts: one folder per release under test/replay/histories/. */
export const HISTORIES_DIR = path.join(PROJECT_ROOT, 'test', 'replay', 'histories');

const MAX_HISTORY_BYTES = 2 * 1024 * 1024;

const ManifestSchema = z.object({
  release: z.string(),
  gantryVersion: z.string(),
  gitCommit: z.string(),
  sdkVersion: z.string(),
  recordedAt: z.string(),
  histories: z
    .array(
      z.object({
        workflowType: z.string(),
        case: z.string(),
        file: z.string().regex(/^[\w.-]+\.json$/),
        workflowId: z.string(),
        open: z.boolean(),
        events: z.number().int().positive(),
      }),
    )
    .max(1000),
});
export type HistoryManifest = z.infer<typeof ManifestSchema>;

export interface Recording {
  release: string;
  workflowType: string;
  case: string;
  open: boolean;
  workflowId: string;
  file: string;
}

/** Every release's manifest entries, oldest folder name first. */
export async function listRecordings(dir = HISTORIES_DIR): Promise<Recording[]> {
  const releases = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  const recordings: Recording[] = [];
  for (const release of releases.sort()) {
    const file = path.join(dir, release, 'manifest.json');
    const parsed = ManifestSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    if (!parsed.success) throw new Error(`${file}: ${parsed.error.message}`);
    for (const h of parsed.data.histories) recordings.push({ release, ...h, file: path.join(dir, release, h.file) });
  }
  return recordings;
}

/** A recorded history (protobufjs's JSON, as the recorder writes it) as the History the replayer takes. */
export async function historyFromFile(file: string): Promise<proto.temporal.api.history.v1.History> {
  const text = await readFile(file, 'utf8');
  if (text.length > MAX_HISTORY_BYTES) throw new Error(`${file}: over ${MAX_HISTORY_BYTES} bytes`);
  return proto.temporal.api.history.v1.History.fromObject(JSON.parse(text));
}
