import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { FINAL_JOB_STATES } from '@vmkeep/contracts';
import { HostsService } from '@vmkeep/inventory';
import { JobEntity, VmEntity } from '@vmkeep/persistence';
import { FaultError, NotFoundError, type VsphereSession } from '@vmkeep/vsphere';
import { In, IsNull, Not, type Repository as OrmRepository } from 'typeorm';
import { describeFailure } from './failure';

export interface SweepResult {
  /** Snapshots removed (or found already gone) and cleared from their jobs. */
  removed: number;
  /** Snapshots still left because their host did not answer or refused; retried on the next sweep. */
  pending: number;
}

/**
 * Removes snapshots that finished jobs could not remove (host unreachable at the time). A job keeps
 * `snapshotMoref` until the snapshot is really gone; the sweep runs at worker start and then periodically.
 */
@Injectable()
export class SnapshotCleanupService {
  private readonly log = new Logger(SnapshotCleanupService.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<SweepResult>;

  constructor(
    @InjectRepository(JobEntity) private readonly jobs: OrmRepository<JobEntity>,
    @InjectRepository(VmEntity) private readonly vms: OrmRepository<VmEntity>,
    private readonly sessions: HostsService,
  ) {}

  /** One pass over every finished job that still names a snapshot. Concurrent calls share one pass. */
  sweep(): Promise<SweepResult> {
    this.running ??= this.sweepOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Sweeps now and then every `intervalMs` until stop(). */
  start(intervalMs: number): void {
    this.stop();
    const tick = () => void this.sweep().catch((err: unknown) => this.log.warn(`sweep failed: ${describeFailure(err)}`));
    tick();
    this.timer = setInterval(tick, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async sweepOnce(): Promise<SweepResult> {
    const result: SweepResult = { removed: 0, pending: 0 };
    const leftovers = await this.jobs.find({
      where: { snapshotMoref: Not(IsNull()), state: In([...FINAL_JOB_STATES]) },
      select: { id: true, vmId: true, snapshotMoref: true },
    });
    if (leftovers.length === 0) return result;

    const byHost = new Map<string, JobEntity[]>();
    for (const job of leftovers) {
      const vm = job.vmId ? await this.vms.findOne({ where: { id: job.vmId }, select: { id: true, hostId: true } }) : null;
      if (!vm) {
        // VM (and so its host) was removed from VMKeep: nothing left that could reach the snapshot.
        await this.clear(job, 'its VM is no longer registered');
        result.removed++;
        continue;
      }
      byHost.set(vm.hostId, [...(byHost.get(vm.hostId) ?? []), job]);
    }

    for (const [hostId, jobs] of byHost) {
      let session: VsphereSession;
      try {
        session = await this.sessions.sessionFor(hostId);
      } catch (err) {
        this.log.warn(`${jobs.length} snapshot(s) on host ${hostId} wait for cleanup: ${describeFailure(err)}`);
        result.pending += jobs.length;
        continue;
      }
      try {
        for (const job of jobs) {
          if (await this.remove(session, job)) result.removed++;
          else result.pending++;
        }
      } finally {
        await session.logout().catch(() => undefined);
      }
    }
    return result;
  }

  private async remove(session: VsphereSession, job: JobEntity): Promise<boolean> {
    const moref = job.snapshotMoref as string;
    try {
      await session.removeSnapshot({ type: 'VirtualMachineSnapshot', value: moref });
      await this.clear(job, 'removed');
      return true;
    } catch (err) {
      if (err instanceof NotFoundError || (err instanceof FaultError && err.fault === 'ManagedObjectNotFound')) {
        await this.clear(job, 'already gone');
        return true;
      }
      this.log.warn(`snapshot ${moref} of job ${job.id} not removed yet: ${describeFailure(err)}`);
      return false;
    }
  }

  private async clear(job: JobEntity, why: string): Promise<void> {
    await this.jobs.update(job.id, { snapshotMoref: null });
    this.log.log(`snapshot ${job.snapshotMoref} of job ${job.id}: ${why}`);
  }
}
