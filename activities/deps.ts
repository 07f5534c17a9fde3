import type { Client } from '@temporalio/client';
import type { ArtifactStore } from '../artifacts/store';
import type { GantryHome } from '../control/home';

/** What every activity may use; the worker builds it once and closes the activities over it. */
export interface ActivityDeps {
  client: Client;
  store: ArtifactStore;
  home: GantryHome;
  /** The code version this worker runs, recorded in each version's lineage. */
  gitCommit: string | null;
}
