import { Inject, Injectable, Logger, Module, OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Queue } from 'bullmq';
import { In, type Repository as OrmRepository } from 'typeorm';
import { FINAL_JOB_STATES, RESTORE_QUEUE, RESTORE_VM_JOB, VmkeepError, type JobState } from '@vmkeep/contracts';
import { HostsService, InventoryModule } from '@vmkeep/inventory';
import { JobEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { QueueModule, REDIS_OPTIONS, type RedisConnectionOptions } from '@vmkeep/queue';
import { openPointRepository } from '@vmkeep/repositories';
import type { VimSession, VmConfig, VsphereSession } from '@vmkeep/vsphere';
import { VmRestoreError } from './errors';
import { restoreVm, type VmRestoreOptions } from './vm-restore';

const POLL_MS = 1000;
export const RESTORE_QUEUE_TOKEN = Symbol('RESTORE_QUEUE');

/** What a restore-vm job row keeps in `options`. */
export interface RestoreVmJobOptions extends VmRestoreOptions {
  pointId: string;
}

class RestoreCancelled extends Error {}

/** Producer: validates the request against the restore point, writes the job row, then enqueues it. */
@Injectable()
export class VmRestoreJobs {
  constructor(
    @InjectRepository(JobEntity) private readonly jobs: OrmRepository<JobEntity>,
    @InjectRepository(RestorePointEntity) private readonly points: OrmRepository<RestorePointEntity>,
    @InjectRepository(VmEntity) private readonly vms: OrmRepository<VmEntity>,
    @Inject(RESTORE_QUEUE_TOKEN) private readonly queue: Queue,
  ) {}

  async create(pointId: string, options: VmRestoreOptions, userId: string | null): Promise<JobEntity> {
    const point = await this.points.findOneBy({ id: pointId });
    if (!point) throw new VmkeepError(`restore point ${pointId} not found`, 'not_found');
    if (!point.vmConfig) {
      throw new VmRestoreError(`restore point ${pointId} was taken without the VM configuration; restore its disks instead`, 'invalid');
    }
    const mode = options.mode ?? 'new';
    let originalVmId: string | undefined;
    if (mode === 'overwrite') {
      const vm = await this.vms.findOneBy({ id: point.vmId });
      if (!vm) throw new VmRestoreError(`the original VM of restore point ${pointId} is no longer in the inventory`, 'invalid');
      originalVmId = vm.moref;
    } else if (options.name === undefined) {
      throw new VmRestoreError('a name for the new VM is required (or ask to overwrite the original explicitly)', 'invalid');
    }
    const stored: RestoreVmJobOptions = { ...options, mode, pointId, ...(originalVmId ? { originalVmId } : {}) };
    const job = await this.jobs.save(
      this.jobs.create({ type: 'restore-vm', state: 'queued', vmId: point.vmId, requestedBy: userId, options: { ...stored }, restorePointId: point.id, phase: 'queued' }),
    );
    await this.queue.add(RESTORE_VM_JOB, { jobId: job.id }, { jobId: job.id, attempts: 1, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } });
    return job;
  }

  /** Takes a job no worker has started off the restore queue (true; also for an unknown id); false once a worker holds it. */
  async removeQueued(jobId: string): Promise<boolean> {
    return (await this.queue.remove(jobId)) === 1;
  }
}

/** Worker side: runs one restore-vm job and records progress, outcome and cleanup on its row. */
@Injectable()
export class VmRestoreService {
  private readonly log = new Logger(VmRestoreService.name);

  constructor(
    @InjectRepository(JobEntity) private readonly jobs: OrmRepository<JobEntity>,
    @InjectRepository(RestorePointEntity) private readonly points: OrmRepository<RestorePointEntity>,
    @InjectRepository(VmEntity) private readonly vms: OrmRepository<VmEntity>,
    private readonly hosts: HostsService,
  ) {}

  async run(jobId: string, signal?: AbortSignal): Promise<JobState> {
    const job = await this.jobs.findOneBy({ id: jobId });
    if (!job) throw new VmkeepError(`job ${jobId} does not exist`, 'job_not_found');
    if (FINAL_JOB_STATES.includes(job.state)) return job.state;
    if (job.type !== 'restore-vm') throw new VmkeepError(`job ${jobId} is a ${job.type} job, not a VM restore`, 'job_type');
    if (job.cancelRequested) return this.finish(jobId, 'cancelled', { phase: 'cancelled before start' });
    await this.jobs.update(jobId, { state: 'running', startedAt: new Date(), phase: 'starting', error: null, progress: 0, bytesDone: 0, speed: 0 });

    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(new RestoreCancelled('the worker is shutting down'));
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    if (signal?.aborted) onOuterAbort();
    const poll = setInterval(() => {
      this.jobs
        .findOne({ where: { id: jobId }, select: { id: true, cancelRequested: true } })
        .then((row) => row?.cancelRequested && !abort.signal.aborted && abort.abort(new RestoreCancelled('cancelled')))
        .catch(() => undefined);
    }, POLL_MS);
    try {
      const result = await this.restore(job, abort.signal);
      return await this.finish(jobId, 'succeeded', { progress: 100, phase: `done: VM ${result.name} (${result.vmId})`, stats: null });
    } catch (err) {
      const reason = abort.signal.aborted ? abort.signal.reason : undefined;
      if (reason instanceof RestoreCancelled && reason.message === 'cancelled') return this.finish(jobId, 'cancelled', { phase: 'cancelled' });
      const message = reason instanceof Error ? reason.message : err instanceof Error ? err.message : String(err);
      this.log.warn(`job ${jobId} failed: ${message}`);
      return this.finish(jobId, 'failed', { phase: 'failed', error: message.slice(0, 4000) });
    } finally {
      clearInterval(poll);
      signal?.removeEventListener('abort', onOuterAbort);
    }
  }

  async markInterrupted(jobId: string, reason: string): Promise<void> {
    await this.jobs.update({ id: jobId, state: In(['queued', 'running']) }, { state: 'failed', phase: 'failed', error: reason.slice(0, 4000), finishedAt: new Date() });
  }

  private async restore(job: JobEntity, signal: AbortSignal) {
    const options = job.options as unknown as RestoreVmJobOptions;
    const point = await this.points.findOneBy({ id: options.pointId });
    if (!point?.vmConfig) throw new VmRestoreError(`restore point ${options.pointId} is gone or has no VM configuration`, 'invalid');
    const vm = await this.vms.findOneBy({ id: point.vmId });
    if (!vm) throw new VmRestoreError(`the VM of restore point ${point.id} is no longer in the inventory (its host is needed)`, 'invalid');
    const config = point.vmConfig as unknown as VmConfig;
    const repository = await openPointRepository(point);
    const sources = point.disks.map((disk) => ({ deviceKey: disk.deviceKey, open: () => repository.openDisk(point.repositoryPointId, disk.key) }));
    await this.jobs.update(job.id, { phase: 'connecting' });
    const session = await this.hosts.sessionFor(vm.hostId);
    try {
      if (!isProvisioning(session)) throw new VmRestoreError('this host connection cannot create VMs', 'invalid');
      const started = Date.now();
      let lastWrite = 0;
      let writing: Promise<unknown> = Promise.resolve();
      const result = await restoreVm(session, config, sources, options, {
        signal,
        log: (message) => this.log.log(`job ${job.id}: ${message}`),
        onProgress: ({ bytesDone, bytesTotal, phase }) => {
          const now = Date.now();
          if (now - lastWrite < POLL_MS && bytesDone < bytesTotal) return;
          lastWrite = now;
          const seconds = (now - started) / 1000;
          const update = {
            bytesDone,
            bytesTotal,
            phase,
            progress: bytesTotal ? Math.round((bytesDone / bytesTotal) * 10000) / 100 : 0,
            speed: seconds > 0 ? Math.round(bytesDone / seconds) : 0,
          };
          writing = writing.then(() => this.jobs.update(job.id, update)).catch(() => undefined);
        },
      });
      await writing;
      return result;
    } finally {
      await session.logout().catch(() => undefined);
    }
  }

  private async finish(jobId: string, state: JobState, patch: Partial<Pick<JobEntity, 'progress' | 'phase' | 'error' | 'stats'>>): Promise<JobState> {
    await this.jobs.update(jobId, { ...patch, state, finishedAt: new Date() });
    return state;
  }
}

function isProvisioning(session: VsphereSession): session is VimSession {
  return typeof (session as Partial<VimSession>).placementTargets === 'function';
}

/** API side: enqueues restore-vm jobs. Needs ConfigModule and PersistenceModule in the application. */
@Module({
  imports: [QueueModule],
  providers: [
    { provide: RESTORE_QUEUE_TOKEN, inject: [REDIS_OPTIONS], useFactory: (connection: RedisConnectionOptions) => new Queue(RESTORE_QUEUE, { connection }) },
    VmRestoreJobs,
  ],
  exports: [VmRestoreJobs],
})
export class VmRestoreJobsModule implements OnModuleDestroy {
  constructor(@Inject(RESTORE_QUEUE_TOKEN) private readonly queue: Queue) {}
  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
  }
}

/** Worker side: runs restore-vm jobs. */
@Module({
  imports: [InventoryModule],
  providers: [VmRestoreService],
  exports: [VmRestoreService],
})
export class VmRestoreModule {}
