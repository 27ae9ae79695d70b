/**
 * Incremental-forever backups with changed block tracking, end to end below the API: BackupService with a real
 * SQLite database and repository, talking to vcsim (extended with CBT by test/vcsim/cbt.go) through a TCP proxy
 * that counts the bytes the host sends. A full first, then scattered writes into the seeded flat file: the
 * incremental fetches only the changed areas, restores byte-exact, and the previous point still equals the old
 * disk. Fallbacks to a full read (CBT reset, resized disk, earlier run incomplete, unreadable parent) say why.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BackupService } from '@vmkeep/backup';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { JobEntity, openDataSource, RestorePointEntity, type RestorePointDisk, type VmEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { connect, type VimSession } from '@vmkeep/vsphere';
import type { DataSource } from 'typeorm';
import { backupServiceOn, saveVcsimVms } from './peers/backup-service';
import { buildRandomZeroImage, seededBytes, type DiskImage } from './peers/disk-images';
import { startTcpProxy, viaProxy, type TcpProxy } from './peers/tcp-proxy';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Chunks of CHUNK bytes the writes touch, in bytes (what an incremental reading whole chunks would read). */
function touchedChunkBytes(writes: [number, number][], size: number): number {
  const chunks = new Set<number>();
  for (const [offset, length] of writes) {
    for (let c = Math.floor(offset / CHUNK); c * CHUNK < offset + length; c++) chunks.add(c);
  }
  return [...chunks].reduce((n, c) => n + Math.min(CHUNK, size - c * CHUNK), 0);
}

describe('CBT incremental backups on vcsim', () => {
  let work: string;
  let image: DiskImage;
  let sim: VcsimInstance;
  let proxy: TcpProxy;
  let config: AppConfig;
  let db: DataSource;
  let service: BackupService;
  let vmRows: Map<string, VmEntity>;

  const simVm = (name: string) => sim.vms.find((v) => v.name === name)!;
  const flatFile = (name: string) => simVm(name).disks[0].localPath.replace(/\.vmdk$/, '-flat.vmdk');
  const admin = (): Promise<VimSession> =>
    connect({ url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint });

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-e2e-cbt-'));
    image = await buildRandomZeroImage({ dir: work, seed: 'e2e-cbt', sizeMiB: 40 });
    sim = await startVcsim({
      seed: [
        { name: 'cbt-paged', disks: [{ image: image.path }], cbtPageBytes: 16 * MiB },
        { name: 'cbt-over', disks: [{ image: image.path }], cbtOverReport: true },
        { name: 'cbt-fallbacks', disks: [{ image: image.path }] },
      ],
    });
    proxy = await startTcpProxy({ host: '127.0.0.1', port: sim.port });

    config = loadConfig({ VMKEEP_DATA_DIR: path.join(work, 'data'), VMKEEP_CHUNK_SIZE: String(CHUNK) }, work);
    db = await openDataSource(config);
    vmRows = await saveVcsimVms(db, sim, ['cbt-paged', 'cbt-over', 'cbt-fallbacks']);
    service = backupServiceOn(db, config, () =>
      connect({ url: viaProxy(sim.url, proxy), username: sim.username, password: sim.password, thumbprint: sim.thumbprint }),
    );
  });

  afterAll(async () => {
    await db?.destroy();
    await proxy?.close();
    await sim?.stop();
    await closeSharedChunkWorkers();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  /** Runs a backup job of the VM; returns the job, its point's disk record and the bytes the host sent. */
  async function backup(name: string, options: Record<string, unknown> = {}) {
    const job = await db.getRepository(JobEntity).save({ type: 'backup', state: 'queued', vmId: vmRows.get(name)!.id, options });
    const before = proxy.bytesDown;
    const state = await service.run(job.id);
    const done = (await db.getRepository(JobEntity).findOneBy({ id: job.id }))!;
    expect({ state, error: done.error }).toEqual({ state: 'succeeded', error: null });
    const point = (await db.getRepository(RestorePointEntity).findOneBy({ id: done.restorePointId! }))!;
    return { job: done, point, disk: point.disks[0] as RestorePointDisk, fetched: proxy.bytesDown - before };
  }

  async function restored(point: RestorePointEntity): Promise<Buffer> {
    const repo = await Repository.open(config.repositoryPath);
    const disk = await repo.openDisk(point.repositoryPointId, point.disks[0].key);
    try {
      return await disk.read(0, disk.size);
    } finally {
      await disk.close();
    }
  }

  async function scribble(name: string, writes: [number, number][], seed: string): Promise<void> {
    const handle = await fs.open(flatFile(name), 'r+');
    try {
      for (const [i, [offset, length]] of writes.entries()) await handle.write(seededBytes(seed, String(i), length), 0, length, offset);
    } finally {
      await handle.close();
    }
  }

  it('full with "*", then an incremental that fetches only the changed areas and restores byte-exact', async () => {
    const first = await backup('cbt-paged');
    expect(first.disk).toMatchObject({ backupMode: 'full', fullReason: 'no earlier restore point of this VM' });
    expect(first.disk.changeId).toMatch(/^52 .*\/1$/);
    // "*" skipped the unallocated areas of the disk: less than the whole disk was fetched.
    expect(first.job.stats!.bytesRead).toBeLessThan(image.size);
    expect(first.job.stats!.bytesRead).toBe(first.job.stats!.changedBytes);
    expect(sha256(await restored(first.point))).toBe(image.sha256);

    // Scattered writes, one across the 16 MiB page boundary of the host's answers, one at the very end.
    const writes: [number, number][] = [
      [1 * MiB + 3000, 9000],
      [7 * MiB + 100 * KiB, 300 * KiB],
      [16 * MiB - 40 * KiB, 80 * KiB],
      [29 * MiB, 4096],
      [image.size - 700, 700],
    ];
    await scribble('cbt-paged', writes, 'round-1');
    const changed = await fs.readFile(flatFile('cbt-paged'));

    const second = await backup('cbt-paged');
    expect(second.disk).toMatchObject({ backupMode: 'incremental', parentPointId: first.point.id });
    expect(second.disk.fullReason).toBeUndefined();
    expect(second.disk.changeId).toMatch(/\/2$/);
    // The simulator reports changes in 64 KiB blocks. Chunks 28 and 29 (the 300 KiB write) changed in 192 KiB
    // of their 256 each and are read whole; the other five changed in one 64 KiB block each, and only that
    // block is read (over the parent's copy of the chunk).
    const mustRead = 2 * CHUNK + 5 * 64 * KiB;
    expect(touchedChunkBytes(writes, image.size)).toBe(7 * CHUNK);
    expect(second.job.stats).toMatchObject({ bytesRead: mustRead, patchedChunks: 5, incrementalDisks: 1, fullDisks: 0 });
    expect(second.job.stats!.parentChunks).toBeGreaterThan(0);
    // Over the wire: the areas read plus SOAP traffic, nowhere near the 40 MiB disk.
    expect(second.fetched).toBeGreaterThanOrEqual(mustRead);
    expect(second.fetched).toBeLessThan(mustRead + 512 * KiB);

    expect(sha256(await restored(second.point))).toBe(sha256(changed));
    expect(sha256(await restored(first.point))).toBe(image.sha256);
  });

  it('an over-reporting host costs extra reads but gives the same data', async () => {
    const first = await backup('cbt-over');
    const writes: [number, number][] = [[3 * MiB, 5000], [21 * MiB + 1, 200 * KiB]];
    await scribble('cbt-over', writes, 'over');
    const changed = await fs.readFile(flatFile('cbt-over'));
    const second = await backup('cbt-over');
    expect(second.disk).toMatchObject({ backupMode: 'incremental', parentPointId: first.point.id });
    expect(second.job.stats!.bytesRead).toBeGreaterThan(touchedChunkBytes(writes, image.size));
    expect(second.job.stats!.bytesRead).toBeLessThan(image.size / 2);
    expect(sha256(await restored(second.point))).toBe(sha256(changed));
  });

  it('falls back to a full read and says why: CBT reset, resized disk, earlier run incomplete, unreadable parent', async () => {
    const vm = vmRows.get('cbt-fallbacks')!;
    const base = await backup('cbt-fallbacks');
    expect(base.disk.backupMode).toBe('full');

    // CBT reset on the host: the old changeId is rejected, the disk is read whole ("*"), and the data is right.
    const session = await admin();
    try {
      await session.setChangeTracking!(vm.moref, false);
      await session.setChangeTracking!(vm.moref, true);
    } finally {
      await session.logout();
    }
    await scribble('cbt-fallbacks', [[2 * MiB, 10 * KiB]], 'reset');
    const afterReset = await backup('cbt-fallbacks');
    expect(afterReset.disk.backupMode).toBe('full');
    expect(afterReset.disk.fullReason).toMatch(/host rejected the changeId \(InvalidArgument/);
    expect(afterReset.job.phase).toMatch(/^done; full read of .*: the host rejected the changeId/);
    expect(sha256(await restored(afterReset.point))).toBe(sha256(await fs.readFile(flatFile('cbt-fallbacks'))));

    // A normal incremental works again from the new chain.
    expect((await backup('cbt-fallbacks')).disk.backupMode).toBe('incremental');

    // The disk's size differs from the last point's (as after a resize).
    const points = db.getRepository(RestorePointEntity);
    const last = (await points.findOne({ where: { vmId: vm.id }, order: { createdAt: 'DESC' } }))!;
    await points.update(last.id, { disks: [{ ...last.disks[0], capacityBytes: last.disks[0].capacityBytes - MiB }] });
    const resized = await backup('cbt-fallbacks');
    expect(resized.disk.fullReason).toMatch(/^the disk was resized/);

    // Every run records the point it builds on.
    expect(resized.job.basePointId).toBe(last.id);

    // A run that failed after the last point existed, created within the same second as the run that made it
    // (SQLite keeps job times in seconds): told apart by its base, the next run reads whole.
    const jobs = db.getRepository(JobEntity);
    await jobs.save({ type: 'backup', state: 'failed', vmId: vm.id, error: 'worker died', basePointId: resized.point.id, createdAt: resized.job.createdAt });
    const afterFailure = await backup('cbt-fallbacks');
    expect(afterFailure.disk.fullReason).toMatch(/^the previous run \(job .*, failed\) did not complete$/);

    // A failed run whose base is an older point ran before the last point was made, whatever its row's time says.
    await jobs.save({ type: 'backup', state: 'failed', vmId: vm.id, error: 'old', basePointId: resized.point.id, createdAt: new Date(Date.now() + 60_000) });
    const notAfter = await backup('cbt-fallbacks');
    expect(notAfter.disk.backupMode).toBe('incremental');
    expect(notAfter.disk.parentPointId).toBe(afterFailure.point.id);

    // Two points with the same creation time: the newest is the one the other was not built on.
    await db.query('UPDATE restore_points SET createdAt = (SELECT createdAt FROM restore_points WHERE id = ?) WHERE id = ?', [afterFailure.point.id, notAfter.point.id]);

    // The parent's chunks are gone from the repository: full read, and the data is still right.
    const chunksDir = path.join(config.repositoryPath, 'chunks');
    for (const entry of await fs.readdir(chunksDir, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) await fs.rm(path.join(entry.parentPath, entry.name));
    }
    await scribble('cbt-fallbacks', [[30 * MiB, 64 * KiB]], 'unreadable');
    const unreadable = await backup('cbt-fallbacks');
    expect(unreadable.disk.backupMode).toBe('full');
    expect(unreadable.disk.fullReason).toMatch(/parent restore point cannot be read/);
    expect(unreadable.job.basePointId).toBe(notAfter.point.id);
    expect(sha256(await restored(unreadable.point))).toBe(sha256(await fs.readFile(flatFile('cbt-fallbacks'))));
  });

  it('reads every disk whole when the job turns CBT off', async () => {
    const off = await backup('cbt-paged', { cbt: false });
    expect(off.disk).toMatchObject({ backupMode: 'full' });
    expect(off.job.stats!.bytesRead).toBe(image.size);
  });
});
