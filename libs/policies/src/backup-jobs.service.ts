import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { JobEntity, VmEntity } from '@vmkeep/persistence';
import { BackupQueue } from '@vmkeep/queue';

/** A VM already has a queued or running backup job. */
export class BackupAlreadyActiveError extends VmkeepError {
  constructor(
    vmName: string,
    readonly activeJob: Pick<JobEntity, 'id' | 'state'>,
  ) {
    super(`VM ${vmName} already has a ${activeJob.state} backup job (${activeJob.id})`, 'conflict');
  }
}

/**
 * The one way backup jobs are created, by "back up now" and by policy runs: the database row first, then the
 * queue. At most one queued or running backup per VM.
 */
@Injectable()
export class BackupJobsService {
  private readonly logger = new Logger('Jobs');

  constructor(
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    private readonly queue: BackupQueue,
  ) {}

  /** The VM's queued or running backup job, if any. */
  active(vmId: string): Promise<JobEntity | null> {
    return this.jobs.findOneBy({ vmId, type: 'backup', state: In(['queued', 'running']) });
  }

  async create(vmId: string, options: Record<string, unknown>, requestedBy: string | null): Promise<{ job: JobEntity; vm: VmEntity }> {
    const vm = await this.vms.findOneBy({ id: vmId });
    if (!vm) throw new VmkeepError(`VM ${vmId} not found`, 'not_found');
    if (vm.missing) {
      throw new VmkeepError(`VM ${vm.name} was not found on its host by the last inventory sync; sync the host again`, 'conflict');
    }
    const active = await this.active(vmId);
    if (active) throw new BackupAlreadyActiveError(vm.name, active);
    const job = await this.jobs.save(this.jobs.create({ type: 'backup', state: 'queued', vmId, requestedBy, options }));
    // Two requests may both have passed the check above: the oldest job wins, the others withdraw.
    const [first] = await this.jobs.find({
      where: { vmId, type: 'backup', state: In(['queued', 'running']) },
      order: { createdAt: 'ASC', id: 'ASC' },
      take: 1,
    });
    if (first && first.id !== job.id) {
      await this.jobs.delete({ id: job.id });
      throw new BackupAlreadyActiveError(vm.name, first);
    }
    try {
      await this.queue.enqueue(job.id);
    } catch (err) {
      const message = `could not enqueue the job: ${(err as Error).message}`;
      await this.jobs.update(job.id, { state: 'failed', error: message, finishedAt: new Date() });
      this.logger.error(`job ${job.id}: ${message}`);
      throw new VmkeepError(message, 'unavailable');
    }
    return { job, vm };
  }
}
