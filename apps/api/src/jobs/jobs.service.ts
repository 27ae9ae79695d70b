import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { JobEntity, RepositoryEntity, VmEntity } from '@vmkeep/persistence';
import { BackupJobsService } from '@vmkeep/policies';
import { BackupQueue } from '@vmkeep/queue';
import { VmRestoreJobs } from '@vmkeep/restore';
import type { AuthUser } from '../auth/auth.decorators';
import { paging } from '../common/paging';
import type { JobDto, JobPageDto, JobsQueryDto } from './jobs.dto';

/** Creates backup jobs (database row first, then the queue) and cancels them. Never runs a backup itself. */
@Injectable()
export class JobsService {
  constructor(
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    private readonly queue: BackupQueue,
    private readonly backupJobs: BackupJobsService,
    private readonly restoreJobs: VmRestoreJobs,
  ) {}

  /** Creates a "back up now" job through the shared BackupJobsService (also used by policy runs). */
  async startBackup(vmId: string, quiesce: boolean, user: AuthUser, repositoryId?: string): Promise<{ job: JobDto; vm: VmEntity }> {
    if (repositoryId && !(await this.jobs.manager.existsBy(RepositoryEntity, { id: repositoryId }))) {
      throw new VmkeepError(`repository ${repositoryId} not found`, 'invalid');
    }
    const { job, vm } = await this.backupJobs.create(vmId, { quiesce, ...(repositoryId ? { repositoryId } : {}) }, user.id);
    return { job: jobView(job), vm };
  }

  async list(query: JobsQueryDto): Promise<JobPageDto> {
    const { page, pageSize, skip } = paging(query);
    const where = {
      ...(query.state ? { state: query.state } : {}),
      ...(query.vmId ? { vmId: query.vmId } : {}),
      ...(query.type ? { type: query.type } : {}),
    };
    const [rows, total] = await this.jobs.findAndCount({ where, order: { createdAt: 'DESC', id: 'DESC' }, skip, take: pageSize });
    return { items: rows.map(jobView), total, page, pageSize };
  }

  async get(id: string): Promise<JobDto> {
    return jobView(await this.entity(id));
  }

  /**
   * A queued job is taken off the queue and marked cancelled; a running one gets cancelRequested and the worker
   * stops it (removing its snapshot). Finished jobs cannot be cancelled.
   */
  async cancel(id: string): Promise<JobDto> {
    const job = await this.entity(id);
    // Restore jobs wait on their own queue.
    const removeQueued = () => (job.type === 'restore-vm' ? this.restoreJobs.removeQueued(id) : this.queue.remove(id));
    if (job.state === 'queued' && (await removeQueued())) {
      // Conditional: the worker may have started it meanwhile.
      const result = await this.jobs.update({ id, state: 'queued' }, { state: 'cancelled', cancelRequested: true, finishedAt: new Date(), phase: 'cancelled before start' });
      if (result.affected) return this.get(id);
    }
    const fresh = await this.entity(id);
    if (fresh.state === 'queued' || fresh.state === 'running') {
      await this.jobs.update({ id, state: In(['queued', 'running']) }, { cancelRequested: true });
      return this.get(id);
    }
    throw new VmkeepError(`job ${id} already ended (${fresh.state})`, 'conflict');
  }

  private async entity(id: string): Promise<JobEntity> {
    const job = await this.jobs.findOneBy({ id });
    if (!job) throw new VmkeepError(`job ${id} not found`, 'not_found');
    return job;
  }
}

export function jobView(j: JobEntity): JobDto {
  return {
    id: j.id,
    type: j.type,
    state: j.state,
    vmId: j.vmId,
    requestedBy: j.requestedBy,
    options: j.options,
    progress: j.progress ?? 0,
    bytesDone: j.bytesDone ?? 0,
    bytesTotal: j.bytesTotal ?? 0,
    speed: j.speed ?? 0,
    phase: j.phase ?? null,
    error: j.error ?? null,
    cancelRequested: j.cancelRequested ?? false,
    snapshotMoref: j.snapshotMoref ?? null,
    restorePointId: j.restorePointId ?? null,
    stats: j.stats ?? null,
    disks: j.disks ?? null,
    bytesRead: j.bytesRead ?? 0,
    bytesStored: j.bytesStored ?? 0,
    createdAt: j.createdAt,
    startedAt: j.startedAt ?? null,
    finishedAt: j.finishedAt ?? null,
  };
}
