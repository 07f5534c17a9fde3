import { z } from 'zod';
import { gantryHome } from '../../control/home';
import { startHomeDashboard } from '../../ui/start';
import { badFlags } from '../errors';

const FlagsSchema = z.object({
  port: z.coerce.number().int().min(0).max(65_535),
  host: z.string().min(1).max(255),
});

/** `gantry ui`: the dashboard in the foreground, against this process's Temporal server, until Ctrl-C. */
export async function uiCommand(flags: { port: string; host: string }): Promise<void> {
  const parsed = FlagsSchema.safeParse(flags);
  if (!parsed.success) throw badFlags(parsed.error);
  const home = gantryHome();
  const dashboard = await startHomeDashboard(home, parsed.data);
  console.log(
    `dashboard        ${dashboard.url}  (actions ${
      dashboard.adminToken ? `need the admin token in ${home.root}/admin-token` : 'off: no admin token'
    }; Ctrl-C stops it)`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await dashboard.close();
}
