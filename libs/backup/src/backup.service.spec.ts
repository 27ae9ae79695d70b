import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { SNAPSHOT_NAME_PREFIX } from '@vmkeep/contracts';
import { BufferDisk, DiskError, type Disk } from '@vmkeep/disk';
import type { HostsService } from '@vmkeep/inventory';
import { HostEntity, JobEntity, openDataSource, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import {
  ConnectionError,
  NotFoundError,
  type MoRef,
  type VmDiskInfo,
  type VmInfo,
  type VsphereSession,
} from '@vmkeep/vsphere';
import type { DataSource } from 'typeorm';
import { BackupService, snapshotName } from './backup.service';
import { SnapshotCleanupService } from './snapshot-cleanup.service';
import { FolderRepositoryResolver } from '../../../test/peers/folder-repository';

const MiB = 1024 * 1024;

/**
 * An in-memory vSphere host: VMs with disks held in buffers, snapshots as a list. The real host (vcsim) is used
 * by test/e2e-*.test.ts; here the point is BackupService's bookkeeping in a real database and a real repository.
 */
class FakeHost {
  reachable = true;
  removeFails = false;
  /** Reads of this disk at or past `offset` fail. */
  failRead?: { key: number; offset: number };
  readDelayMs = 0;
  vmExists = true;
  snapshots: { ref: MoRef; name: string; description?: string }[] = [];
  created: string[] = [];
  removed: string[] = [];
  private next = 1;

  constructor(readonly disks: { info: VmDiskInfo; data: Buffer }[]) {}

  session(): VsphereSession {
    const check = (): void => {
      if (!this.reachable) throw new ConnectionError('connect ECONNREFUSED 127.0.0.1:1');
    };
    const vmInfo = (): VmInfo => ({
      ref: { type: 'VirtualMachine', value: 'vm-1' },
      name: 'web-1',
      datacenter: 'DC0',
      datacenterPath: 'DC0',
      powerState: 'poweredOn',
      toolsRunningStatus: 'guestToolsRunning',
      disks: this.disks.map((d) => d.info),
      snapshots: [...this.snapshots],
    });
    return {
      about: { apiType: 'VirtualCenter', apiVersion: '8.0', fullName: 'fake' },
      inventory: () => Promise.reject(new Error('not used')),
      getVm: async (id) => {
        check();
        if (!this.vmExists || id !== 'vm-1') throw new NotFoundError(`VirtualMachine ${id} not found`);
        return vmInfo();
      },
      createSnapshot: async (_vm, name, description) => {
        check();
        const ref = { type: 'VirtualMachineSnapshot', value: `snapshot-${this.next++}` };
        this.snapshots.push({ ref, name, description });
        this.created.push(name);
        return ref;
      },
      removeSnapshot: async (ref) => {
        check();
        if (this.removeFails) throw new ConnectionError('socket hang up');
        const i = this.snapshots.findIndex((s) => s.ref.value === ref.value);
        if (i < 0) throw new NotFoundError(`snapshot ${ref.value} not found`);
        this.snapshots.splice(i, 1);
        this.removed.push(ref.value);
      },
      snapshotDisks: async () => {
        check();
        return this.disks.map((d) => d.info);
      },
      openDisk: async (_dc, disk) => {
        check();
        const data = this.disks.find((d) => d.info.key === disk.key)!.data;
        return new FlakyDisk(data, this, disk.key);
      },
      logout: async () => undefined,
    };
  }
}

/** A buffer disk that can fail at an offset or read slowly, like a datastore behind a bad link. */
class FlakyDisk implements Disk {
  private readonly inner: BufferDisk;
  constructor(
    data: Buffer,
    private readonly host: FakeHost,
    private readonly key: number,
  ) {
    this.inner = new BufferDisk(data);
  }
  get size(): number {
    return this.inner.size;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    if (this.host.readDelayMs) await new Promise((r) => setTimeout(r, this.host.readDelayMs));
    const fail = this.host.failRead;
    if (fail?.key === this.key && offset + length > fail.offset) {
      throw new DiskError('connection reset by peer', '[LocalDS_0] web-1/web-1.vmdk', offset);
    }
    return this.inner.read(offset, length);
  }
  extents() {
    return this.inner.extents();
  }
  async close(): Promise<void> {}
}

function diskInfo(key: number, size: number): VmDiskInfo {
  return {
    key,
    label: `Hard disk ${key - 1999}`,
    capacityBytes: size,
    fileName: `[LocalDS_0] web-1/web-1_${key}.vmdk`,
    datastore: 'LocalDS_0',
  };
}

describe('BackupService (SQLite + real repository, in-memory host)', () => {
  let dir: string;
  let config: AppConfig;
  let db: DataSource;
  let host: FakeHost;
  let service: BackupService;
  let cleanup: SnapshotCleanupService;
  let vm: VmEntity;
  let diskA: Buffer;
  let diskB: Buffer;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-backup-spec-'));
    config = loadConfig({ VMKEEP_DATA_DIR: dir, VMKEEP_CHUNK_SIZE: String(256 * 1024) }, dir);
    db = await openDataSource(config);
    diskA = Buffer.concat([randomBytes(MiB), Buffer.alloc(MiB), randomBytes(MiB / 2)]);
    diskB = Buffer.concat([Buffer.alloc(MiB), randomBytes(MiB)]);
    host = new FakeHost([
      { info: diskInfo(2000, diskA.length), data: diskA },
      { info: diskInfo(2001, diskB.length), data: diskB },
    ]);
    const sessions = { sessionFor: async () => host.session() } as unknown as HostsService;
    const hostRow = await db.getRepository(HostEntity).save({
      name: 'vc1',
      url: 'https://127.0.0.1:1',
      username: 'u',
      passwordSealed: 'x',
    });
    vm = await db.getRepository(VmEntity).save({ hostId: hostRow.id, moref: 'vm-1', name: 'web-1' });
    service = new BackupService(
      db.getRepository(JobEntity),
      db.getRepository(VmEntity),
      db.getRepository(HostEntity),
      db.getRepository(RestorePointEntity),
      sessions,
      new FolderRepositoryResolver(config),
    );
    cleanup = new SnapshotCleanupService(db.getRepository(JobEntity), db.getRepository(VmEntity), sessions);
  });

  afterEach(async () => {
    await db.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    await closeSharedChunkWorkers();
  });

  const newJob = (options: Record<string, unknown> = {}): Promise<JobEntity> =>
    db.getRepository(JobEntity).save({ type: 'backup', state: 'queued', vmId: vm.id, options });
  const reload = async (id: string): Promise<JobEntity> => (await db.getRepository(JobEntity).findOneBy({ id }))!;
  const repository = () => Repository.open(config.repositoryPath);

  it('stores every disk, commits manifest and row, records stats and removes the snapshot', async () => {
    const job = await newJob({ quiesce: true });
    await expect(service.run(job.id)).resolves.toBe('succeeded');

    const done = await reload(job.id);
    expect(done).toMatchObject({ state: 'succeeded', progress: 100, error: null, snapshotMoref: null });
    expect(done.bytesTotal).toBe(diskA.length + diskB.length);
    expect(done.startedAt).not.toBeNull();
    expect(done.finishedAt).not.toBeNull();
    expect(done.stats).toMatchObject({ zeroChunks: 8, newChunks: 10, bytesRead: expect.any(Number) });
    expect(host.created).toEqual([snapshotName(job.id)]);
    expect(host.snapshots).toEqual([]);

    const point = (await db.getRepository(RestorePointEntity).findOneBy({ id: done.restorePointId! }))!;
    expect(point).toMatchObject({ vmId: vm.id, jobId: job.id, sizeBytes: diskA.length + diskB.length, quiesced: true });
    expect(point.storedBytes).toBe(done.stats!.newBytes);
    expect(point.disks.map((d) => d.key)).toEqual(['disk-2000', 'disk-2001']);

    const repo = await repository();
    const manifest = await repo.readManifest(point.repositoryPointId);
    expect(manifest.meta).toMatchObject({ vm: { name: 'web-1', moref: 'vm-1' }, host: { name: 'vc1' }, jobId: job.id });
    for (const [key, data] of [['disk-2000', diskA], ['disk-2001', diskB]] as const) {
      const restored = await repo.openDisk(point.repositoryPointId, key);
      expect((await restored.read(0, restored.size)).equals(data)).toBe(true);
      await restored.close();
    }
  });

  it('stores almost nothing new for a second backup of unchanged disks', async () => {
    const first = await newJob();
    await service.run(first.id);
    const second = await newJob();
    await service.run(second.id);
    const [a, b] = [await reload(first.id), await reload(second.id)];
    expect(a.stats!.newBytes).toBeGreaterThan(2 * MiB);
    expect(b.stats).toMatchObject({ newChunks: 0, newBytes: 0, dedupChunks: a.stats!.newChunks });
  });

  it('fails a read error cleanly: message names the disk, no manifest, no row, snapshot removed', async () => {
    host.failRead = { key: 2001, offset: MiB + MiB / 2 };
    const job = await newJob();
    await expect(service.run(job.id)).resolves.toBe('failed');
    const failed = await reload(job.id);
    expect(failed.error).toMatch(/^reading Hard disk 2 from vc1 failed: .*connection reset by peer$/);
    expect(failed.restorePointId).toBeNull();
    expect(failed.snapshotMoref).toBeNull();
    expect(await db.getRepository(RestorePointEntity).count()).toBe(0);
    expect(await (await repository()).listPoints()).toEqual([]);
    expect(host.snapshots).toEqual([]);
  });

  it('names a VM deleted since the last sync', async () => {
    host.vmExists = false;
    const job = await newJob();
    await expect(service.run(job.id)).resolves.toBe('failed');
    expect((await reload(job.id)).error).toBe('VM web-1 no longer exists on vc1');
    expect(host.created).toEqual([]);
  });

  it('reports an unreachable host', async () => {
    host.reachable = false;
    const job = await newJob();
    await service.run(job.id);
    expect((await reload(job.id)).error).toMatch(/^host vc1 is unreachable: .*ECONNREFUSED/);
  });

  it('keeps the snapshot id when removal fails and the sweep removes it once the host answers', async () => {
    host.removeFails = true;
    const job = await newJob();
    await expect(service.run(job.id)).resolves.toBe('succeeded');
    const kept = (await reload(job.id)).snapshotMoref;
    expect(kept).toMatch(/^snapshot-/);
    expect(host.snapshots.map((s) => s.ref.value)).toEqual([kept]);

    host.reachable = false;
    await expect(cleanup.sweep()).resolves.toEqual({ removed: 0, pending: 1 });
    expect((await reload(job.id)).snapshotMoref).toBe(kept);

    host.reachable = true;
    host.removeFails = false;
    await expect(cleanup.sweep()).resolves.toEqual({ removed: 1, pending: 0 });
    expect((await reload(job.id)).snapshotMoref).toBeNull();
    expect(host.snapshots).toEqual([]);
  });

  it('cancels a running backup when cancelRequested is set: state cancelled, snapshot removed, nothing stored', async () => {
    host.readDelayMs = 1000;
    const job = await newJob();
    const running = service.run(job.id);
    while ((await reload(job.id)).bytesDone === 0) await new Promise((r) => setTimeout(r, 50));
    await db.getRepository(JobEntity).update(job.id, { cancelRequested: true });
    await expect(running).resolves.toBe('cancelled');
    const cancelled = await reload(job.id);
    expect(cancelled).toMatchObject({ state: 'cancelled', error: null, snapshotMoref: null, restorePointId: null });
    expect(host.snapshots).toEqual([]);
    expect(await (await repository()).listPoints()).toEqual([]);
  });

  it('reports progress on the job row while it copies', async () => {
    host.readDelayMs = 400;
    const job = await newJob();
    const running = service.run(job.id);
    let seen: JobEntity | undefined;
    while (!seen) {
      const row = await reload(job.id);
      if (row.bytesDone > 0 && row.progress < 100) seen = row;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen.state).toBe('running');
    expect(seen.phase).toMatch(/^reading Hard disk [12] \([12]\/2\)$/);
    expect(seen.progress).toBeCloseTo((seen.bytesDone / seen.bytesTotal) * 100, 1);
    expect(seen.speed).toBeGreaterThan(0);
    await expect(running).resolves.toBe('succeeded');
  });

  it('removes leftovers of finished earlier runs but not the snapshot of a job still running', async () => {
    const old = await newJob();
    await db.getRepository(JobEntity).update(old.id, { state: 'failed', snapshotMoref: 'snapshot-old' });
    const busy = await newJob();
    await db.getRepository(JobEntity).update(busy.id, { state: 'running' });
    host.snapshots.push(
      { ref: { type: 'VirtualMachineSnapshot', value: 'snapshot-old' }, name: snapshotName(old.id) },
      { ref: { type: 'VirtualMachineSnapshot', value: 'snapshot-busy' }, name: snapshotName(busy.id) },
      { ref: { type: 'VirtualMachineSnapshot', value: 'snapshot-admin' }, name: 'before upgrade' },
    );
    const job = await newJob();
    await expect(service.run(job.id)).resolves.toBe('succeeded');
    expect(host.removed).toContain('snapshot-old');
    expect(host.snapshots.map((s) => s.ref.value).sort()).toEqual(['snapshot-admin', 'snapshot-busy']);
    expect((await reload(old.id)).snapshotMoref).toBeNull();
    expect(host.created).toEqual([`${SNAPSHOT_NAME_PREFIX} ${job.id}`]);
  });

  it('leaves finished jobs alone and closes interrupted ones', async () => {
    const job = await newJob();
    await db.getRepository(JobEntity).update(job.id, { state: 'succeeded' });
    await expect(service.run(job.id)).resolves.toBe('succeeded');
    expect(host.created).toEqual([]);

    const stuck = await newJob();
    await db.getRepository(JobEntity).update(stuck.id, { state: 'running' });
    await service.markInterrupted(stuck.id, 'the worker running this job stopped');
    expect(await reload(stuck.id)).toMatchObject({ state: 'failed', error: 'the worker running this job stopped' });
    await service.markInterrupted(job.id, 'ignored');
    expect((await reload(job.id)).state).toBe('succeeded');
  });

  it('skips a job cancelled before it started', async () => {
    const job = await newJob();
    await db.getRepository(JobEntity).update(job.id, { cancelRequested: true });
    await expect(service.run(job.id)).resolves.toBe('cancelled');
    expect(host.created).toEqual([]);
  });
});
