import type { Command } from 'commander';
import { CliError } from '../context';
import { mbPerSecond } from '../format';
import type { Runner } from '../program';
import { ProgressBar } from '../progress-bar';
import type { JobView } from '../resources';

const FINAL = ['succeeded', 'failed', 'cancelled'];
const POLL_MS = 500;

interface RestoreVmOptions {
  name?: string;
  host?: string;
  cluster?: string;
  pool?: string;
  folder?: string;
  datastore?: string;
  networkMap: string[];
  thin?: boolean;
  powerOn?: boolean;
  overwriteOriginal?: boolean;
  wait?: boolean;
}

/** "a=b" pairs → { a: "b" }; a malformed pair is a usage error. */
export function parsePairs(pairs: string[], option: string): Record<string, string> | undefined {
  if (!pairs.length) return undefined;
  const map: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) throw new CliError(`${option} takes SOURCE=TARGET, got "${pair}"`);
    map[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return map;
}

/** `vmkeep restore vm POINT`: added to the `restore` group. */
export function registerRestoreVm(program: Command, run: Runner): void {
  const restore = program.commands.find((c) => c.name() === 'restore') ?? program.command('restore').description('restores');
  restore
    .command('vm <point>')
    .description('rebuild the VM of a restore point on vSphere: as a new VM (--name), or over the original (--overwrite-original)')
    .option('--name <name>', 'name of the new VM')
    .option('--host <host>', 'host to place the new VM on')
    .option('--cluster <cluster>', 'cluster to place the new VM in')
    .option('--pool <pool>', 'resource pool')
    .option('--folder <folder>', 'VM folder')
    .option('--datastore <ds>', 'datastore for every disk (default: where each disk was)')
    .option('--network-map <a=b>', 'connect NICs of network a to network b (repeatable)', (value: string, all: string[]) => [...all, value], [])
    .option('--thin', 'thin provisioned disks')
    .option('--power-on', 'power the VM on afterwards')
    .option('--overwrite-original', 'power off the original VM and replace its disks with the backed-up ones')
    .option('--wait', 'follow the job with a progress bar until it ends; exit code 1 unless it succeeded')
    .action(
      run(async (ctx, opts: RestoreVmOptions, pointId: string) => {
        if (!opts.overwriteOriginal && !opts.name) throw new CliError('give the new VM a --name, or ask for --overwrite-original explicitly');
        if (opts.overwriteOriginal && opts.name) throw new CliError('--name and --overwrite-original exclude each other');
        const body = {
          ...(opts.name ? { name: opts.name } : {}),
          ...(opts.host ? { host: opts.host } : {}),
          ...(opts.cluster ? { cluster: opts.cluster } : {}),
          ...(opts.pool ? { resourcePool: opts.pool } : {}),
          ...(opts.folder ? { folder: opts.folder } : {}),
          ...(opts.datastore ? { datastore: opts.datastore } : {}),
          ...(opts.networkMap.length ? { networkMap: parsePairs(opts.networkMap, '--network-map') } : {}),
          ...(opts.thin ? { thin: true } : {}),
          powerOn: opts.powerOn === true,
          overwriteOriginal: opts.overwriteOriginal === true,
        };
        const job = await ctx.client.post<JobView>(`/api/restore-points/${encodeURIComponent(pointId)}/restore-vm`, body);
        const what = opts.overwriteOriginal ? 'restore over the original VM' : `restore as VM ${opts.name}`;
        if (!opts.wait) {
          ctx.print(job, () => `${what} queued: job ${job.id}`);
          return 0;
        }
        ctx.note(`${what}: job ${job.id}`);
        const bar = new ProgressBar(ctx, 0, 'restore');
        let final: JobView;
        try {
          for (;;) {
            final = await ctx.client.get<JobView>(`/api/jobs/${job.id}`);
            bar.update(final.bytesDone, final.bytesTotal, final.speed, final.phase ?? final.state);
            if (FINAL.includes(final.state)) break;
            await new Promise((r) => setTimeout(r, POLL_MS));
          }
        } finally {
          await bar.stop();
        }
        ctx.print(final, () =>
          final.state === 'succeeded'
            ? `${what} succeeded at ${mbPerSecond(final.speed)}: ${final.phase ?? ''}`
            : `${what} ${final.state}: ${final.error ?? final.phase ?? ''}`,
        );
        return final.state === 'succeeded' ? 0 : 1;
      }),
    );
}
