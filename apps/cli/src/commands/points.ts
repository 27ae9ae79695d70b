import type { Command } from 'commander';
import { bytes, table } from '../format';
import type { Runner } from '../program';
import { listPoints, resolveVm } from '../resources';

export function registerPoints(program: Command, run: Runner): void {
  program
    .command('point')
    .description('restore points')
    .command('list')
    .description('list restore points, newest first')
    .option('--vm <vm>', 'only points of this VM (name or id)')
    .action(
      run(async (ctx, opts: { vm?: string }) => {
        const vmId = opts.vm ? (await resolveVm(ctx, opts.vm)).id : undefined;
        const points = await listPoints(ctx, vmId);
        ctx.print(points, () =>
          table(
            ['ID', 'VM', 'CREATED', 'DISKS', 'SIZE', 'STORED'],
            points.map((p) => [
              p.id,
              p.vmName ?? p.vmId,
              p.createdAt,
              p.disks.map((d) => d.key).join(','),
              bytes(p.sizeBytes),
              bytes(p.storedBytes),
            ]),
          ),
        );
      }),
    );
}
