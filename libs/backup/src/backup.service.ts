import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { FINAL_JOB_STATES, SNAPSHOT_NAME_PREFIX, VmkeepError, type JobState } from '@vmkeep/contracts';
import { HostsService } from '@vmkeep/inventory';
import {
  HostEntity,
  JobEntity,
  RestorePointEntity,
  VmEntity,
  type JobDiskFigures,
  type RestorePointDisk,
} from '@vmkeep/persistence';
import { DiskError, type Disk, type Extent } from '@vmkeep/disk';
import {
  IndexFormatError,
  PointDiskNotFoundError,
  PointNotFoundError,
  RepositoryError,
  type DiskWriteStats,
  type PointWriter,
} from '@vmkeep/repository';
import {
  ALL_ALLOCATED_CHANGE_ID,
  collectChangedAreas,
  FaultError,
  NotFoundError,
  type MoRef,
  type VmConfig,
  type VmDiskInfo,
  type VmInfo,
  type VsphereSession,
} from '@vmkeep/vsphere';
import { RepositoryResolver, type BackupTarget } from '@vmkeep/repositories';
import { In, IsNull, Not, type Repository as OrmRepository } from 'typeorm';
import { AllocatedAreasDisk, areaBytes, planDisk, type DiskPlan, type ParentPoint } from './cbt';
import { BackupCancelled, BackupFailure, describeFailure } from './failure';
import { diskFigures } from './figures';
import { indexBackupFiles, indexesFiles, type FileIndexOutcome } from './file-index';
import { ProgressTracker } from './progress';
import { quiescePlan, quiesceModeOf, takeSnapshot, type TakenSnapshot } from './quiesce';

/** How often a running job looks at `cancelRequested` and writes progress. */
const POLL_MS = 1000;

/** Everything one run of a backup job needs. */
interface RunContext {
  job: JobEntity;
  vm: VmEntity;
  host: HostEntity;
  signal: AbortSignal;
  /** The repository the job writes to: `options.repositoryId` (a policy's or the request's) or the default. */
  target: BackupTarget;
}

/** Counters stored on the job when it succeeds. */
type BackupStats = Pick<DiskWriteStats, 'newChunks' | 'newBytes' | 'dedupChunks' | 'zeroChunks' | 'bytesRead'> & {
  chunks: number;
  /** Chunks taken from the parent point's index without reading (incremental disks). */
  parentChunks: number;
  /** Changed chunks built from the parent's chunk with only the changed areas read (incremental disks). */
  patchedChunks: number;
  /** Bytes the host reported changed (incremental) or allocated ("*" full reads). */
  changedBytes: number;
  incrementalDisks: number;
  fullDisks: number;
};

/** A committed backup: its row, counters, and the final phase (which says why disks were read whole). */
interface BackupResult {
  point: RestorePointEntity;
  stats: BackupStats;
  phase: string;
  /** Per-disk figures for the job history. */
  disks: JobDiskFigures[];
}

/** What one disk's copy did, for the restore point and the job. */
interface DiskOutcome {
  stats: DiskWriteStats;
  mode: 'full' | 'incremental';
  fullReason?: string;
  parentPointId?: string;
  changedBytes: number;
}

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
    private readonly repository: RepositoryResolver,
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
      const { target } = ctx as RunContext;
      const { point, stats, disks, indexed } = await this.backup(ctx as RunContext, ({ point, phase }) =>
        indexBackupFiles({
          repo: target.repository,
          repositoryPath: target.location,
          // The walk runs on a worker thread that opens the repository itself.
          ...(target.runtime ? { reopen: { location: target.location, runtime: target.runtime } } : {}),
          job,
          point,
          phase,
          signal: abort.signal,
          log: this.log,
          setPhase: (p) => this.setPhase(job.id, p),
        }),
      );
      return await this.finish(job.id, 'succeeded', {
        restorePointId: point.id,
        stats: { ...stats, ...indexed.stats },
        disks,
        bytesRead: stats.bytesRead,
        bytesStored: stats.newBytes,
        progress: 100,
        phase: indexed.phase,
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
    const repositoryId = typeof job.options?.repositoryId === 'string' ? job.options.repositoryId : null;
    const target = await this.repository.forBackup(repositoryId).catch((err: unknown) => {
      throw new BackupFailure(`the repository of job ${job.id} cannot be opened: ${describeFailure(err)}`, { cause: err });
    });
    return { job, vm, host, signal, target };
  }

  /**
   * Snapshot, copy and commit, then snapshot removal. `whenCommitted` (the guest file index, which reads the
   * committed point from the repository, never the snapshot) starts as soon as the point is committed and runs
   * while the host removes the snapshot; its outcome is awaited last.
   */
  private async backup(
    ctx: RunContext,
    whenCommitted: (result: BackupResult) => Promise<FileIndexOutcome>,
  ): Promise<BackupResult & { indexed: FileIndexOutcome }> {
    const { job, vm, host, signal } = ctx;
    await this.setPhase(job.id, `connecting to ${host.name}`);
    const session = await this.sessions.sessionFor(host.id);
    try {
      const info = await this.currentVm(session, ctx);
      await this.removeLeftovers(session, ctx, info);
      quiescePlan(info, quiesceModeOf(job.options), vm.name); // quiesce "require" fails here, before the VM is changed
      const cbt = await this.prepareChangeTracking(session, ctx, info);
      signal.throwIfAborted();

      // The run's base: the point an incremental builds on, recorded before the snapshot so a failure is tied to it.
      await this.jobs.update(job.id, { basePointId: (await this.newestPoint(ctx))?.id ?? null });
      const taken = await takeSnapshot({
        session,
        info,
        mode: quiesceModeOf(job.options),
        vmName: vm.name,
        name: snapshotName(job.id),
        description: `Created by VMKeep for backup job ${job.id}; removed automatically when the backup ends.`,
        setPhase: (p) => this.setPhase(job.id, p),
      });
      const { snapshot } = taken;
      if (taken.note) this.log.warn(`job ${job.id}: ${taken.note}`);
      await this.jobs.update(job.id, { snapshotMoref: snapshot.value });
      const indexes = indexesFiles(job);
      let done: BackupResult;
      let indexing: Promise<FileIndexOutcome> | undefined;
      try {
        const result = await this.copy(session, ctx, info, snapshot, taken, cbt);
        done = taken.note ? { ...result, phase: `${result.phase}; ${taken.note}`.slice(0, 255) } : result;
        indexing = whenCommitted(done);
        indexing.catch(() => undefined); // awaited below, after the removal
      } finally {
        await this.removeSnapshot(session, job.id, snapshot, indexing && indexes ? 'removing snapshot; indexing guest files' : 'removing snapshot');
      }
      await session.logout().catch(() => undefined);
      if (indexes) await this.setPhase(job.id, 'indexing guest files'); // the job's final phase replaces it
      return { ...done, indexed: await indexing };
    } catch (err) {
      await session.logout().catch(() => undefined);
      throw err;
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

  /**
   * Turns changed block tracking on when the job wants it (`options.cbt`, default true) and the VM supports
   * it. Returns whether this run may use it; a VM where it was just enabled gets it with this run's snapshot.
   */
  private async prepareChangeTracking(session: VsphereSession, { job, vm }: RunContext, info: VmInfo): Promise<boolean> {
    if (job.options?.cbt === false) return false;
    if (!session.setChangeTracking || !session.queryChangedDiskAreas || info.changeTrackingSupported === false) {
      this.log.log(`job ${job.id}: VM ${vm.name} does not support changed block tracking; every disk is read whole`);
      return false;
    }
    if (info.changeTrackingEnabled === true) return true;
    await this.setPhase(job.id, 'enabling changed block tracking');
    try {
      await session.setChangeTracking(vm.moref, true);
    } catch (err) {
      this.log.warn(`job ${job.id}: enabling changed block tracking on VM ${vm.name} failed: ${describeFailure(err)}`);
      return false;
    }
    this.log.log(`job ${job.id}: changed block tracking enabled on VM ${vm.name}; it takes effect with this backup's snapshot`);
    return true;
  }

  /**
   * The VM's newest backup point in the job's repository. Points created within the same clock tick (SQLite
   * keeps seconds) are ordered by their jobs' bases: the newest is the one no other tied point was built on.
   */
  private async newestPoint(ctx: RunContext): Promise<RestorePointEntity | undefined> {
    const { vm, target } = ctx;
    const inTarget = target.id ? [{ repositoryId: target.id }, { repositoryId: IsNull(), repositoryPath: target.location }] : [{ repositoryPath: target.location }];
    const recent = await this.points.find({
      where: inTarget.map((where) => ({ vmId: vm.id, kind: 'backup' as const, ...where })),
      order: { createdAt: 'DESC' },
      take: 8,
    });
    const ties = recent.filter((p) => p.createdAt.getTime() === recent[0]?.createdAt.getTime());
    if (ties.length <= 1) return recent[0];
    const jobIds = ties.flatMap((p) => (p.jobId ? [p.jobId] : []));
    const bases = new Set((await this.jobs.find({ where: { id: In(jobIds) }, select: { id: true, basePointId: true } })).map((j) => j.basePointId));
    const heads = ties.filter((p) => !bases.has(p.id));
    return heads.length === 1 ? heads[0] : recent[0];
  }

  /**
   * The VM's newest restore point in this repository, and a run of the VM that failed or was cancelled after
   * that point existed, if any (its disks are then read whole). "After" is by ids: such a run recorded that
   * point as its base (`basePointId`); runs that failed before it was made recorded an older base.
   */
  private async findParent(ctx: RunContext): Promise<{ parent?: ParentPoint; incomplete?: string }> {
    const { job, vm } = ctx;
    const point = await this.newestPoint(ctx);
    if (!point) return {};
    const parent: ParentPoint = { id: point.id, repositoryPointId: point.repositoryPointId, disks: point.disks };
    const failed = await this.jobs.findOne({
      where: { vmId: vm.id, type: 'backup', id: Not(job.id), state: In(['failed', 'cancelled']), basePointId: point.id },
      select: { id: true, state: true },
    });
    return failed ? { parent, incomplete: `job ${failed.id}, ${failed.state}` } : { parent };
  }

  private async copy(
    session: VsphereSession,
    ctx: RunContext,
    info: VmInfo,
    snapshot: MoRef,
    consistency: Pick<TakenSnapshot, 'quiesced' | 'note'>,
    cbt: boolean,
  ): Promise<BackupResult> {
    const { job, vm, host, signal } = ctx;
    const { quiesced, note: quiesceNote } = consistency;
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
    const repo = ctx.target.repository;
    const writer = await repo.beginPoint();
    const stats: BackupStats = {
      chunks: 0,
      newChunks: 0,
      newBytes: 0,
      dedupChunks: 0,
      zeroChunks: 0,
      bytesRead: 0,
      parentChunks: 0,
      patchedChunks: 0,
      changedBytes: 0,
      incrementalDisks: 0,
      fullDisks: 0,
    };
    const pointDisks: RestorePointDisk[] = [];
    const figures: JobDiskFigures[] = [];
    const fullReasons: string[] = [];
    const { parent, incomplete } = cbt ? await this.findParent(ctx) : {};
    let manifestWritten = false;
    try {
      let before = 0;
      for (const [i, d] of disks.entries()) {
        const phase = `reading ${d.label} (${i + 1}/${disks.length})`;
        tracker.update(before, phase);
        const onBytes = (done: number) => tracker.update(before + done);
        const plan: DiskPlan = cbt ? planDisk(d, parent, incomplete) : { mode: 'full', reason: 'changed block tracking is off for this job', allocatedOnly: false };
        const diskStarted = Date.now();
        const outcome = await this.copyDisk(session, { ctx, info, snapshot, plan }, d, onBytes, writer);
        figures.push(diskFigures({ ...outcome, key: diskKey(d), label: d.label, capacityBytes: d.capacityBytes, durationMs: Date.now() - diskStarted }));
        const s = outcome.stats;
        stats.chunks += s.chunks;
        stats.newChunks += s.newChunks;
        stats.newBytes += s.newBytes;
        stats.dedupChunks += s.dedupChunks;
        stats.zeroChunks += s.zeroChunks;
        stats.bytesRead += s.bytesRead;
        stats.parentChunks += s.parentChunks ?? 0;
        stats.patchedChunks += s.patchedChunks ?? 0;
        stats.changedBytes += outcome.changedBytes;
        stats[outcome.mode === 'incremental' ? 'incrementalDisks' : 'fullDisks']++;
        if (outcome.fullReason && cbt) fullReasons.push(`${d.label} (${diskKey(d)}): ${outcome.fullReason}`);
        pointDisks.push({
          key: diskKey(d),
          deviceKey: d.key,
          label: d.label,
          capacityBytes: d.capacityBytes,
          fileName: d.fileName,
          ...diskRecord(d, outcome),
        });
        before += d.capacityBytes;
      }
      tracker.update(total, 'committing restore point');
      const vmConfig = await this.captureVmConfig(session, ctx, info);
      await tracker.drain();
      signal.throwIfAborted();

      const manifest = await writer.commit({
        vm: { name: vm.name, moref: vm.moref, instanceUuid: vm.instanceUuid },
        host: { id: host.id, name: host.name },
        jobId: job.id,
        quiesced,
        ...(quiesceNote ? { quiesceNote } : {}),
        disks: pointDisks,
        ...(vmConfig ? { vmConfig } : {}),
      });
      manifestWritten = true;
      const point = await this.points.save(
        this.points.create({
          vmId: vm.id,
          jobId: job.id,
          repositoryPointId: manifest.id,
          repositoryPath: ctx.target.location,
          repositoryId: ctx.target.id,
          kind: 'backup',
          quiesced,
          quiesceNote: quiesceNote ?? null,
          disks: pointDisks.map((disk, i) => ({ ...disk, figures: figures[i] })),
          sizeBytes: total,
          storedBytes: stats.newBytes,
          vmConfig: vmConfig ? { ...vmConfig } : null,
        }),
      );
      const phase = fullReasons.length ? `done; full read of ${fullReasons.join('; ')}`.slice(0, 255) : 'done';
      return { point, stats, phase, disks: figures };
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

  /** The VM's configuration for a later full restore; a failure to read it is logged, never fails the backup. */
  private async captureVmConfig(session: VsphereSession, ctx: RunContext, info: VmInfo): Promise<VmConfig | undefined> {
    if (!session.vmConfig) return undefined;
    try {
      return await session.vmConfig(info.ref.value);
    } catch (err) {
      this.log.warn(`job ${ctx.job.id}: could not read the configuration of VM ${ctx.vm.name}: ${describeFailure(err)}`);
      return undefined;
    }
  }

  /**
   * Copies one disk as planned: incremental (only the areas QueryChangedDiskAreas reports, the rest from the
   * parent's index), or full ("*" to skip unallocated areas where CBT is active). An incremental whose changeId
   * the host rejects, or whose parent point cannot be read, falls back to a full read and says why.
   */
  private async copyDisk(
    session: VsphereSession,
    job: { ctx: RunContext; info: VmInfo; snapshot: MoRef; plan: DiskPlan },
    disk: VmDiskInfo,
    onBytes: (done: number) => void,
    writer: PointWriter,
  ): Promise<DiskOutcome> {
    const { ctx, info, snapshot, plan } = job;
    const { signal, host } = ctx;
    const where = `${disk.label} of VM ${ctx.vm.name}`;
    const query = (changeId: string) =>
      collectChangedAreas(
        (start) => session.queryChangedDiskAreas!(ctx.vm.moref, snapshot, disk.key, start, changeId),
        disk.capacityBytes,
        where,
      );
    const source = await session.openDisk(info.datacenterPath, disk);
    const write = (from: Disk, cbtMeta: Partial<RestorePointDisk>, parent?: { pointId: string; diskKey: string; changed: Extent[] }) =>
      writer.writeDisk(diskKey(disk), from, {
        meta: { deviceKey: disk.key, label: disk.label, capacityBytes: disk.capacityBytes, fileName: disk.fileName, ...cbtMeta },
        onProgress: (p) => onBytes(p.bytesDone),
        signal,
        ...(parent ? { parent } : {}),
      });
    try {
      let fullReason = plan.mode === 'full' ? plan.reason : undefined;
      if (plan.mode === 'incremental') {
        try {
          const { areas } = await query(plan.changeId);
          const outcome = { mode: 'incremental', parentPointId: plan.parent.id, changedBytes: areaBytes(areas) } as const;
          const parent = { pointId: plan.parent.repositoryPointId, diskKey: plan.parentDisk.key, changed: areas };
          return { ...outcome, stats: await write(source, diskRecord(disk, outcome), parent) };
        } catch (err) {
          if (signal.aborted) throw err;
          fullReason = incrementalFailure(err);
          if (!fullReason) throw err;
          this.log.warn(`job ${ctx.job.id}: ${where}: ${fullReason}; reading it whole`);
          await this.setPhase(ctx.job.id, `${disk.label}: ${fullReason}; reading it whole`.slice(0, 255));
        }
      }
      if (disk.changeId && (plan.mode === 'incremental' || plan.allocatedOnly)) {
        try {
          const { areas } = await query(ALL_ALLOCATED_CHANGE_ID);
          const outcome = { mode: 'full', fullReason, changedBytes: areaBytes(areas) } as const;
          return { ...outcome, stats: await write(new AllocatedAreasDisk(source, areas), diskRecord(disk, outcome)) };
        } catch (err) {
          if (!(err instanceof FaultError) || signal.aborted) throw err;
          fullReason = `${fullReason}; the host did not list allocated areas (${err.fault})`;
        }
      }
      const stats = await write(source, diskRecord(disk, { mode: 'full', fullReason }));
      return { stats, mode: 'full', fullReason, changedBytes: stats.bytesRead };
    } catch (err) {
      if (signal.aborted) throw err;
      const detail = err instanceof DiskError ? err.message : describeFailure(err, { hostName: host.name });
      throw new BackupFailure(`reading ${disk.label} from ${host.name} failed: ${detail}`, { cause: err });
    } finally {
      await source.close().catch(() => undefined);
    }
  }

  /** Removes the job's snapshot; when the host does not answer, leaves `snapshotMoref` set for the cleanup sweep. */
  private async removeSnapshot(session: VsphereSession, jobId: string, snapshot: MoRef, phase = 'removing snapshot'): Promise<void> {
    try {
      await this.setPhase(jobId, phase);
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
    fields: Partial<Pick<JobEntity, 'error' | 'phase' | 'progress' | 'stats' | 'restorePointId' | 'disks' | 'bytesRead' | 'bytesStored'>>,
  ): Promise<JobState> {
    await this.jobs.update(jobId, { ...fields, state, finishedAt: new Date() });
    return state;
  }
}

/** Why an incremental could not be done, for errors that call for a full read instead; undefined otherwise. */
function incrementalFailure(err: unknown): string | undefined {
  if (err instanceof FaultError && ['InvalidArgument', 'FileFault', 'NotFound'].includes(err.fault)) {
    return `the host rejected the changeId (${err.fault}: changed block tracking was reset)`;
  }
  if (err instanceof PointNotFoundError || err instanceof PointDiskNotFoundError || err instanceof IndexFormatError) {
    return `the parent restore point cannot be read (${err.message})`;
  }
  if (err instanceof RepositoryError && ['PARENT_UNREADABLE', 'PARENT_MISMATCH'].includes(err.code)) {
    return `the parent restore point cannot be read (${err.message})`;
  }
  return undefined;
}

/** The CBT fields of a restore point disk. */
function diskRecord(disk: VmDiskInfo, outcome: Pick<DiskOutcome, 'mode' | 'fullReason' | 'parentPointId'>): Partial<RestorePointDisk> {
  const record: Partial<RestorePointDisk> = { backupMode: outcome.mode };
  if (disk.changeId) record.changeId = disk.changeId;
  if (outcome.parentPointId) record.parentPointId = outcome.parentPointId;
  if (outcome.fullReason) record.fullReason = outcome.fullReason;
  return record;
}

/** Name of a disk inside a restore point. */
export function diskKey(disk: Pick<VmDiskInfo, 'key'>): string {
  return `disk-${disk.key}`;
}
