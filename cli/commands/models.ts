import { withClient } from '../../control/connect';
import { listModels } from '../../control/reads';
import { readRegistry } from '../../control/registry';
import { UsageError } from '../errors';

/** Models are the registry workflows that are running: one per model name. */
export async function modelsListCommand(options: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const models = (await listModels(client)).map((state) => ({
      model: state.model,
      versions: state.versions.length,
      aliases: state.aliases,
    }));
    if (options.json) {
      console.log(JSON.stringify(models));
      return;
    }
    if (models.length === 0) console.log('no models registered yet');
    for (const m of models) {
      const aliases =
        Object.entries(m.aliases)
          .map(([a, v]) => `${a}→v${v}`)
          .join(' ') || 'no aliases';
      console.log(`${m.model}\t${m.versions} version(s)\t${aliases}`);
    }
  });
}

export async function modelsDescribeCommand(model: string, options: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const state = await readRegistry(client, model);
    if (!state) throw new UsageError(`no model named "${model}" is registered`);
    if (options.json) {
      console.log(JSON.stringify(state));
      return;
    }
    console.log(
      `model ${state.model}: ${state.versions.length} version(s); aliases: ${
        Object.entries(state.aliases)
          .map(([a, v]) => `${a}→v${v}`)
          .join(' ') || 'none'
      }`,
    );
    for (const v of state.versions) {
      const source = v.lineage.source;
      console.log(
        `  v${v.version}\t${v.status}\t${v.blessed ? 'blessed' : 'unblessed'}\t` +
          (v.metrics === null
            ? 'unevaluated\t'
            : v.metrics.task === 'regression'
              ? `rmse ${v.metrics.values?.rmse?.toFixed(4) ?? '?'}\t`
              : `acc ${(v.metrics.testAccuracy * 100).toFixed(2)}%\t`) +
          (source
            ? `imported ${source.format} from ${source.path} (signature ${source.signature})\t`
            : `run ${v.lineage.runId}\t`) +
          `data ${v.lineage.datasetFingerprint.slice(0, 12) || '-'}\tparent ` +
          `${v.lineage.parentVersion ?? '-'}\t${v.registeredAt}`,
      );
      if (source?.unevaluatedReason) console.log(`      not evaluated: ${source.unevaluatedReason}`);
    }
  });
}
