import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { FINAL_JOB_STATES, SNAPSHOT_NAME_PREFIX, VmkeepError, type JobState } from '@vmkeep/contracts';
import { HostsService } from '@vmkeep/inventory';
import {
  HostEntity,
  JobEntity,
  RestorePointEntity,
  VmEntity,
  type RestorePointDisk,
} from '@vmkeep/persistence';
import { DiskError } from '@vmkeep/disk';
import type { DiskWriteStats, PointWriter } from '@vmkeep/repository';
import { NotFoundError, type MoRef, type VmDiskInfo, type VmInfo, type VsphereSession } from '@vmkeep/vsphere';
import { In, type Repository as OrmRepository } from 'typeorm';
import { ChunkRepositoryProvider } from './chunk-repository.provider';
import { BackupCancelled, BackupFailure, describeFailure } from './failure';
import { ProgressTracker } from './progress';

/** How often a running job looks at `cancelRequested` and writes progress. */
const POLL_MS = 1000;

/** Everything one run of a backup job needs. */
interface RunContext {
  job: JobEntity;
  vm: VmEntity;
  host: HostEntity;
  signal: AbortSignal;
}

/** Counters stored on the job when it succeeds. */
type BackupStats = Pick<DiskWriteStats, 'newChunks' | 'newBytes' | 'dedupChunks' | 'zeroChunks' | 'bytesRead'> & {
  chunks: number;
};

/** The name of the snapshot a job creates; `SnapshotCleanupService` and leftover removal recognise it. */
export function snapshotName(jobId: string): string {
  return `${SNAPSHOT_NAME_PREFIX} ${jobId}`;
}

/**
 * Runs one backup job: snapshot → read every disk into the repository → manifest → restore point row, and
 * removes the snapshot in every outcome. The job row is the source of truth and carries progress and errors.
 */
@Injectable()
export class BackupService {
  private readonly log = new Logger(BackupService.name);

  constructor(
    @InjectRepository(JobEntity) private readonly jobs: OrmRepository<JobEntity>,
    @InjectRepository(VmEntity) private readonly vms: OrmRepository<VmEntity>,
    @InjectRepository(HostEntity) private readonly hosts: OrmRepository<HostEntity>,
    @InjectRepository(RestorePointEntity) private readonly points: OrmRepository<RestorePointEntity>,
    private readonly sessions: HostsService,
    private readonly repository: ChunkRepositoryProvider,
  ) {}

  /**
   * Runs the job and records its outcome on the row; resolves with the final state. A job that is already
   * finished is left alone. `signal` (e.g. the worker shutting down) aborts the run like a cancellation.
   * Throws only when the job does not exist or the database itself fails.
   */
  async run(jobId: string, signal?: AbortSignal): Promise<JobState> {
    const job = await this.jobs.findOneBy({ id: jobId });
    if (!job) throw new VmkeepError(`job ${jobId} does not exist`, 'job_not_found');
    if (FINAL_JOB_STATES.includes(job.state)) return job.state;
    if (job.type !== 'backup') throw new VmkeepError(`job ${jobId} is a ${job.type} job, not a backup`, 'job_type');
    if (job.cancelRequested) return this.finish(job.id, 'cancelled', { error: null, phase: 'cancelled before start' });

    // A row still "running" means the worker that had it died (BullMQ handed the job out again): start over.
    const restarted = job.state === 'running';
    await this.jobs.update(job.id, {
      state: 'running',
      startedAt: new Date(),
      phase: restarted ? 'restarting: the previous worker stopped during the backup' : 'starting',
      error: null,
      progress: 0,
      bytesDone: 0,
      speed: 0,
    });

    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(new BackupCancelled('shutdown'));
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    if (signal?.aborted) onOuterAbort();
    const poll = setInterval(() => {
      this.jobs
        .findOne({ where: { id: job.id }, select: { id: true, cancelRequested: true } })
        .then((row) => {
          if (row?.cancelRequested && !abort.signal.aborted) abort.abort(new BackupCancelled('user'));
        })
        .catch((err: unknown) => this.log.warn(`job ${job.id}: cancel poll failed: ${describeFailure(err)}`));
    }, POLL_MS);

    let ctx: Partial<RunContext> = {};
    try {
      ctx = await this.loadContext(job, abort.signal);
      const { point, stats } = await this.backup(ctx as RunContext);
      return await this.finish(job.id, 'succeeded', {
        restorePointId: point.id,
        stats,
        progress: 100,
        phase: 'done',
        error: null,
      });
    } catch (err) {
      const reason = abort.signal.aborted ? abort.signal.reason : undefined;
      if (reason instanceof BackupCancelled && reason.reason === 'user') {
        return this.finish(job.id, 'cancelled', { phase: 'cancelled', error: null });
      }
      const message = reason instanceof BackupCancelled ? reason.message : describeFailure(err, {
        hostName: ctx.host?.name,
        vmName: ctx.vm?.name,
      });
      this.log.warn(`job ${job.id} failed: ${message}`);
      return this.finish(job.id, 'failed', { phase: 'failed', error: message.slice(0, 4000) });
    } finally {
      clearInterval(poll);
      signal?.removeEventListener('abort', onOuterAbort);
    }
  }

  /**
   * Closes a job whose run ended outside `run` (its worker died and BullMQ gave up on it). A snapshot it
   * recorded stays in `snapshotMoref` for the cleanup sweep. Does nothing to a finished job.
   */
  async markInterrupted(jobId: string, reason: string): Promise<void> {
    await this.jobs.update(
      { id: jobId, state: In(['queued', 'running']) },
      { state: 'failed', phase: 'failed', error: reason.slice(0, 4000), finishedAt: new Date() },
    );
  }

  private async loadContext(job: JobEntity, signal: AbortSignal): Promise<RunContext> {
    const vm = job.vmId ? await this.vms.findOneBy({ id: job.vmId }) : null;
    if (!vm) throw new BackupFailure(`the VM of job ${job.id} is no longer in the inventory`);
    const host = await this.hosts.findOneBy({ id: vm.hostId });
    if (!host) throw new BackupFailure(`the host of VM ${vm.name} is no longer registered`);
    return { job, vm, host, signal };
  }

  private async backup(ctx: RunContext): Promise<{ point: RestorePointEntity; stats: BackupStats }> {
    const { job, vm, host, signal } = ctx;
    await this.setPhase(job.id, `connecting to ${host.name}`);
    const session = await this.sessions.sessionFor(host.id);
    try {
      const info = await this.currentVm(session, ctx);
      await this.removeLeftovers(session, ctx, info);
      signal.throwIfAborted();

      const quiesce = job.options?.quiesce === true;
      await this.setPhase(job.id, quiesce ? 'creating quiesced snapshot' : 'creating snapshot');
      const snapshot = await session.createSnapshot(
        vm.moref,
        snapshotName(job.id),
        `Created by VMKeep for backup job ${job.id}; removed automatically when the backup ends.`,
        quiesce,
      );
      await this.jobs.update(job.id, { snapshotMoref: snapshot.value });
      try {
        const quiesced = quiesce && info.powerState === 'poweredOn' && info.toolsRunningStatus === 'guestToolsRunning';
        return await this.copy(session, ctx, info, snapshot, quiesced);
      } finally {
        await this.removeSnapshot(session, job.id, snapshot);
      }
    } finally {
      await session.logout().catch(() => undefined);
    }
  }

  /** The VM as the host sees it now; a VM deleted since the last sync gets a message naming it. */
  private async currentVm(session: VsphereSession, { vm, host }: RunContext): Promise<VmInfo> {
    try {
      return await session.getVm(vm.moref);
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new BackupFailure(`VM ${vm.name} no longer exists on ${host.name}`, { cause: err });
      }
      throw err;
    }
  }

  /** Removes snapshots an earlier, interrupted run of ours left on the VM (but not one of a job still running). */
  private async removeLeftovers(session: VsphereSession, { job, vm }: RunContext, info: VmInfo): Promise<void> {
    const ours = info.snapshots.filter((s) => s.name.startsWith(SNAPSHOT_NAME_PREFIX));
    let removed = 0;
    for (const snap of ours) {
      const ownerId = snap.name.slice(SNAPSHOT_NAME_PREFIX.length).trim();
      if (ownerId && ownerId !== job.id) {
        const owner = await this.jobs.findOne({ where: { id: ownerId }, select: { id: true, state: true } });
        if (owner && !FINAL_JOB_STATES.includes(owner.state)) continue;
      }
      await this.setPhase(job.id, `removing leftover snapshot "${snap.name}"`);
      await session.removeSnapshot(snap.ref);
      await this.jobs.update({ vmId: vm.id, snapshotMoref: snap.ref.value }, { snapshotMoref: null });
      removed++;
    }
    if (removed) this.log.log(`job ${job.id}: removed ${removed} leftover snapshot(s) of earlier runs`);
  }

  private async copy(
    session: VsphereSession,
    ctx: RunContext,
    info: VmInfo,
    snapshot: MoRef,
    quiesced: boolean,
  ): Promise<{ point: RestorePointEntity; stats: BackupStats }> {
    const { job, vm, host, signal } = ctx;
    const all = await session.snapshotDisks(snapshot);
    const disks = all.filter((d) => !d.skipReason);
    for (const d of all.filter((x) => x.skipReason)) {
      this.log.warn(`job ${job.id}: skipping ${d.label} of VM ${vm.name}: ${d.skipReason}`);
    }
    if (disks.length === 0) throw new BackupFailure(`VM ${vm.name} has no disk that can be backed up`);

    const total = disks.reduce((sum, d) => sum + d.capacityBytes, 0);
    const tracker = new ProgressTracker(
      total,
      (u) => this.jobs.update(job.id, u).then(() => undefined),
      (err) => this.log.warn(`job ${job.id}: progress update failed: ${describeFailure(err)}`),
      POLL_MS,
    );
    const repo = await this.repository.get();
    const writer = await repo.beginPoint();
    const stats: BackupStats = { chunks: 0, newChunks: 0, newBytes: 0, dedupChunks: 0, zeroChunks: 0, bytesRead: 0 };
    const pointDisks: RestorePointDisk[] = [];
    let manifestWritten = false;
    try {
      let before = 0;
      for (const [i, d] of disks.entries()) {
        const phase = `reading ${d.label} (${i + 1}/${disks.length})`;
        tracker.update(before, phase);
        const onBytes = (done: number) => tracker.update(before + done);
        const s = await this.copyDisk(session, info, d, onBytes, writer, signal, host.name);
        for (const k of Object.keys(stats) as (keyof BackupStats)[]) stats[k] += s[k];
        pointDisks.push({
          key: diskKey(d),
          deviceKey: d.key,
          label: d.label,
          capacityBytes: d.capacityBytes,
          fileName: d.fileName,
        });
        before += d.capacityBytes;
      }
      tracker.update(total, 'committing restore point');
      await tracker.drain();
      signal.throwIfAborted();

      const manifest = await writer.commit({
        vm: { name: vm.name, moref: vm.moref, instanceUuid: vm.instanceUuid },
        host: { id: host.id, name: host.name },
        jobId: job.id,
        quiesced,
        disks: pointDisks,
      });
      manifestWritten = true;
      const point = await this.points.save(
        this.points.create({
          vmId: vm.id,
          jobId: job.id,
          repositoryPointId: manifest.id,
          repositoryPath: this.repository.path,
          kind: 'backup',
          quiesced,
          disks: pointDisks,
          sizeBytes: total,
          storedBytes: stats.newBytes,
        }),
      );
      return { point, stats };
    } catch (err) {
      await tracker.drain();
      if (manifestWritten) {
        this.log.error(`job ${job.id}: manifest written but the restore point row failed; the point is unlisted`);
      } else {
        await writer.abort().catch((e: unknown) => this.log.warn(`job ${job.id}: abort failed: ${describeFailure(e)}`));
      }
      throw err;
    }
  }

  private async copyDisk(
    session: VsphereSession,
    info: VmInfo,
    disk: VmDiskInfo,
    onBytes: (done: number) => void,
    writer: PointWriter,
    signal: AbortSignal,
    hostName: string,
  ): Promise<DiskWriteStats> {
    const source = await session.openDisk(info.datacenterPath, disk);
    try {
      return await writer.writeDisk(diskKey(disk), source, {
        meta: { deviceKey: disk.key, label: disk.label, capacityBytes: disk.capacityBytes, fileName: disk.fileName },
        onProgress: (p) => onBytes(p.bytesDone),
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      const detail = err instanceof DiskError ? err.message : describeFailure(err, { hostName });
      throw new BackupFailure(`reading ${disk.label} from ${hostName} failed: ${detail}`, { cause: err });
    } finally {
      await source.close().catch(() => undefined);
    }
  }

  /** Removes the job's snapshot; when the host does not answer, leaves `snapshotMoref` set for the cleanup sweep. */
  private async removeSnapshot(session: VsphereSession, jobId: string, snapshot: MoRef): Promise<void> {
    try {
      await this.setPhase(jobId, 'removing snapshot');
      await session.removeSnapshot(snapshot);
      await this.jobs.update(jobId, { snapshotMoref: null });
    } catch (err) {
      if (err instanceof NotFoundError) {
        await this.jobs.update(jobId, { snapshotMoref: null });
        return;
      }
      this.log.warn(`job ${jobId}: snapshot ${snapshot.value} not removed yet (cleanup retries): ${describeFailure(err)}`);
    }
  }

  private async setPhase(jobId: string, phase: string): Promise<void> {
    await this.jobs.update(jobId, { phase });
  }

  private async finish(
    jobId: string,
    state: JobState,
    fields: Partial<Pick<JobEntity, 'error' | 'phase' | 'progress' | 'stats' | 'restorePointId'>>,
  ): Promise<JobState> {
    await this.jobs.update(jobId, { ...fields, state, finishedAt: new Date() });
    return state;
  }
}

/** Name of a disk inside a restore point. */
export function diskKey(disk: Pick<VmDiskInfo, 'key'>): string {
  return `disk-${disk.key}`;
}
