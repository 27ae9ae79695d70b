import type { Command } from 'commander';
import type { JobDiskFigures } from '@vmkeep/contracts';
import { bytes, items, mbPerSecond, table } from '../format';
import type { Runner } from '../program';
import { resolveVm, type JobView } from '../resources';

type JobDetail = JobView & {
  type: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  bytesRead?: number;
  bytesStored?: number;
  disks?: JobDiskFigures[] | null;
};

export function registerJobs(program: Command, run: Runner): void {
  const jobs = program.command('job').alias('jobs').description('job history: backups and restores with per-disk figures');

  jobs
    .command('list')
    .description('jobs, newest first')
    .option('--vm <vm>', 'only jobs of this VM (name or id)')
    .option('--state <state>', 'queued, running, succeeded, failed or cancelled')
    .option('--type <type>', 'backup or restore-vm')
    .option('--limit <n>', 'at most n jobs (1-200)', '50')
    .action(
      run(async (ctx, opts: { vm?: string; state?: string; type?: string; limit: string }) => {
        const query = new URLSearchParams({ pageSize: opts.limit });
        if (opts.vm) query.set('vmId', (await resolveVm(ctx, opts.vm)).id);
        if (opts.state) query.set('state', opts.state);
        if (opts.type) query.set('type', opts.type);
        const list = items(await ctx.client.get<JobDetail[] | { items: JobDetail[] }>(`/api/jobs?${query}`));
        ctx.print(list, () =>
          table(
            ['ID', 'TYPE', 'STATE', 'CREATED', 'DURATION', 'READ', 'STORED', 'PHASE'],
            list.map((j) => [j.id, j.type, j.state, j.createdAt, duration(j), bytes(j.bytesRead), bytes(j.bytesStored), j.error ?? j.phase]),
          ),
        );
      }),
    );

  jobs
    .command('show')
    .description('one job: state, totals and, for backups, what each disk did (mode, bytes read/changed/stored, dedup, speed)')
    .argument('<id>', 'job id')
    .action(
      run(async (ctx, _opts: unknown, id: string) => {
        const job = await ctx.client.get<JobDetail>(`/api/jobs/${encodeURIComponent(id)}`);
        ctx.print(job, () => renderJob(job));
      }),
    );
}

function duration(j: Pick<JobDetail, 'startedAt' | 'finishedAt'>): string {
  if (!j.startedAt || !j.finishedAt) return '';
  return `${((Date.parse(j.finishedAt) - Date.parse(j.startedAt)) / 1000).toFixed(1)} s`;
}

/** Human rendering of `job show`. */
export function renderJob(job: JobDetail): string {
  const lines = [
    `job ${job.id} (${job.type}): ${job.state}`,
    `created ${job.createdAt}; started ${job.startedAt ?? '-'}; finished ${job.finishedAt ?? '-'}${duration(job) ? ` (${duration(job)})` : ''}`,
    ...(job.phase ? [`phase: ${job.phase}`] : []),
    ...(job.error ? [`error: ${job.error}`] : []),
    ...(job.restorePointId ? [`restore point: ${job.restorePointId}`] : []),
    `read ${bytes(job.bytesRead ?? 0)}, stored ${bytes(job.bytesStored ?? 0)}`,
  ];
  if (job.disks?.length) {
    lines.push(
      '',
      table(
        ['DISK', 'LABEL', 'MODE', 'READ', 'CHANGED', 'NEW', 'DEDUP', 'TIME', 'SPEED', 'FULL READ BECAUSE'],
        job.disks.map((d) => [
          d.key,
          d.label,
          d.mode,
          bytes(d.bytesRead),
          bytes(d.changedBytes),
          bytes(d.newBytes),
          `${(d.dedupRatio * 100).toFixed(1)}%`,
          `${(d.durationMs / 1000).toFixed(1)} s`,
          mbPerSecond(d.speed),
          d.fullReason ?? '',
        ]),
      ),
    );
  }
  return lines.join('\n');
}
