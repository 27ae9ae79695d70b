import type { Command } from 'commander';
import { CliError, type CliContext } from '../context';
import { bytes, mbPerSecond } from '../format';
import type { Runner } from '../program';
import { ProgressBar } from '../progress-bar';
import { resolveVm, type JobView } from '../resources';
import { resolveRepository } from './repositories';

const FINAL = ['succeeded', 'failed', 'cancelled'];
const POLL_MS = 500;

export function registerBackup(program: Command, run: Runner): void {
  program
    .command('backup')
    .description('backups')
    .command('run <vm>')
    .description('back up a VM now (by name or id)')
    .option('--quiesce', 'quiesce the guest file systems (needs VMware Tools)')
    .option('--wait', 'follow the job with a progress bar until it ends; exit code 1 unless it succeeded')
    .option('--repository <repository>', 'repository to write to, by name or id (default: the default repository)')
    .action(
      run(async (ctx, opts: { quiesce?: boolean; wait?: boolean; repository?: string }, ref: string) => {
        const vm = await resolveVm(ctx, ref);
        const repositoryId = opts.repository ? (await resolveRepository(ctx, opts.repository)).id : undefined;
        const job = await ctx.client.post<JobView>(`/api/vms/${vm.id}/backup`, { quiesce: opts.quiesce === true, ...(repositoryId ? { repositoryId } : {}) });
        if (!opts.wait) {
          ctx.print(job, () => `backup of ${vm.name} queued: job ${job.id}`);
          return 0;
        }
        ctx.note(`backup of ${vm.name}: job ${job.id}`);
        const final = await follow(ctx, job.id);
        ctx.print(final, () => summary(vm.name, final));
        return final.state === 'succeeded' ? 0 : 1;
      }),
    );
}

/** Polls the job until it reaches a final state, drawing a progress bar meanwhile. */
async function follow(ctx: CliContext, jobId: string): Promise<JobView> {
  const bar = new ProgressBar(ctx, 0, 'backup');
  try {
    for (;;) {
      const job = await ctx.client.get<JobView>(`/api/jobs/${jobId}`);
      bar.update(job.bytesDone, job.bytesTotal, job.speed, job.phase ?? job.state);
      if (FINAL.includes(job.state)) return job;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    await bar.stop();
  }
}

function summary(vmName: string, job: JobView): string {
  if (job.state === 'succeeded') {
    const s = job.stats ?? {};
    return [
      `backup of ${vmName} succeeded: restore point ${job.restorePointId}`,
      `  read ${bytes(s.bytesRead)} of ${bytes(job.bytesTotal)} at ${mbPerSecond(job.speed)}; ` +
        `new data stored ${bytes(s.newBytes)} (${s.newChunks ?? 0} new chunks, ${s.dedupChunks ?? 0} deduplicated, ` +
        `${s.zeroChunks ?? 0} zero)`,
    ].join('\n');
  }
  if (job.state === 'cancelled') return `backup of ${vmName} was cancelled (job ${job.id})`;
  if (job.state === 'failed') return `backup of ${vmName} failed: ${job.error ?? 'unknown error'}`;
  throw new CliError(`job ${job.id} ended in unexpected state ${job.state}`);
}
