import path from 'node:path';

/**
 * Every piece of local state lives under one folder, GANTRY_HOME (default `.gantry/` next to the user's project
 * file, GANTRY_PROJECT, else in the working directory), so two checkouts, two projects or two test runs never
 * share a database or a repository.
 */
export interface GantryHome {
  root: string;
  /** The embedded Temporal server's SQLite file, its address file and its log. */
  temporalDir: string;
  temporalDatabase: string;
  temporalServerFile: string;
  /** The file artifact store: datasets, checkpoints, trained models, reports. */
  artifactsDir: string;
  /** The model repository in TF Serving's layout `<base>/<model>/<version>/`. */
  modelRepositoryDir: string;
  logsDir: string;
}

export function gantryHome(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): GantryHome {
  const projectDir = env.GANTRY_PROJECT ? path.dirname(path.resolve(cwd, env.GANTRY_PROJECT)) : cwd;
  const root = env.GANTRY_HOME ? path.resolve(cwd, env.GANTRY_HOME) : path.join(projectDir, '.gantry');
  const temporalDir = path.join(root, 'temporal');
  return {
    root,
    temporalDir,
    temporalDatabase: path.join(temporalDir, 'temporal.db'),
    temporalServerFile: path.join(temporalDir, 'server.json'),
    artifactsDir: path.resolve(root, env.GANTRY_ARTIFACTS_DIR || 'artifacts'),
    modelRepositoryDir: path.resolve(root, env.GANTRY_MODEL_REPOSITORY || 'models'),
    logsDir: path.join(root, 'logs'),
  };
}
