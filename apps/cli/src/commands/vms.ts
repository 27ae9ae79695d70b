import type { Command } from 'commander';
import { bytes, table } from '../format';
import type { Runner } from '../program';
import { listVms, resolveHost } from '../resources';

export function registerVms(program: Command, run: Runner): void {
  program
    .command('vm')
    .description('virtual machines')
    .command('list')
    .description('list VMs found by the last inventory syncs')
    .option('--host <host>', 'only VMs of this host (name or id)')
    .action(
      run(async (ctx, opts: { host?: string }) => {
        const hostId = opts.host ? (await resolveHost(ctx, opts.host)).id : undefined;
        const vms = await listVms(ctx, hostId);
        ctx.print(vms, () =>
          table(
            ['ID', 'NAME', 'MOREF', 'POWER', 'DISKS', 'SIZE'],
            vms.map((v) => [
              v.id,
              v.name + (v.missing ? ' (missing)' : ''),
              v.moref,
              v.powerState,
              v.diskCount,
              bytes(v.capacityBytes),
            ]),
          ),
        );
      }),
    );
}
