/**
 * The backup-time guest file index walk on a worker thread (`indexPointInWorker`): an encrypted repository holds a
 * point with an ext4 disk of FILES files and a disk without a file system. The worker opens the repository itself
 * (location + passphrase), and its record equals the one the in-thread `indexPoint` writes for the same point
 * (same pages, reused, same volumes and warnings); meanwhile the calling thread's event loop stays responsive.
 * Aborting terminates the worker before a record is written; a wrong passphrase rejects with the repository's error.
 * On an s3:// repository (s3rver) the worker opens the bucket with the S3 settings it was given. The backup hook
 * (`indexBackupFiles` with `reopen`) goes through the worker and turns its record into the job's stats and phase,
 * and hands the worker the repository's unwrapped keys: with the key file gone (the passphrase path cannot work) it
 * still indexes, and scrypt is not called.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { FileIndexStore, indexPoint, indexPointInWorker, type PointIndexRecord } from '@vmkeep/file-index';
import type { Logger } from '@nestjs/common';
import type { JobEntity, RestorePointEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { indexBackupFiles } from '../libs/backup/src/file-index';
import { writeImagePoint } from './peers/repository-points';
import { run } from './peers/fs-images';
import { startS3 } from './peers/s3';

const FILES = 20_000;
const PASSPHRASE = 'threads-test-passphrase';

/** A record without the time it was written. */
const comparable = ({ indexedAt: _at, ...rest }: PointIndexRecord) => rest;

describe('file index walk on a worker thread', () => {
  let work: string;
  let repoDir: string;
  let repo: Repository;
  let pointId: string;
  const opening = () => ({ location: repoDir, runtime: { passphrase: PASSPHRASE } });

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-index-threads-'));
    const tree = path.join(work, 'tree');
    for (let d = 0; d < FILES / 1000; d++) {
      const dir = path.join(tree, 'data', `dir-${String(d).padStart(3, '0')}`);
      await fs.mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: 1000 }, (_, i) => fs.writeFile(path.join(dir, `file-${String(i).padStart(4, '0')}.dat`), i % 7 ? '' : `#${i}`)));
    }
    await fs.mkdir(path.join(tree, 'etc'));
    await fs.writeFile(path.join(tree, 'etc', 'app.conf'), 'mode=a\n');
    const ext4 = path.join(work, 'ext4.img');
    await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-N', String(FILES + 4096), '-d', tree, ext4, '96M']);
    await fs.rm(tree, { recursive: true });
    const noise = path.join(work, 'noise.img');
    await fs.writeFile(noise, randomBytes(4 * 1024 * 1024));

    repoDir = path.join(work, 'repo');
    repo = await Repository.init(repoDir, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE });
    pointId = await writeImagePoint(repo, { 'disk-2000': ext4, 'disk-2001': noise }, { vm: 'threads' });
  });

  afterAll(async () => {
    await repo?.close();
    await closeSharedChunkWorkers();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('aborting terminates the worker: rejects with the reason, no record', async () => {
    const controller = new AbortController();
    const reason = new Error('stop now');
    setTimeout(() => controller.abort(reason), 300);
    await expect(indexPointInWorker(opening(), pointId, ['disk-2000', 'disk-2001'], { signal: controller.signal })).rejects.toBe(reason);
    expect(await FileIndexStore.forRepository(repo).getPoint(pointId)).toBeUndefined();
  });

  it('a wrong passphrase rejects with the repository error of the worker', async () => {
    await expect(
      indexPointInWorker({ location: repoDir, runtime: { passphrase: 'not the passphrase' } }, pointId, ['disk-2000']),
    ).rejects.toMatchObject({ name: 'WrongPassphraseError' });
  });

  it('writes the same record as the in-thread walk while the event loop stays responsive', async () => {
    const store = FileIndexStore.forRepository(repo);
    const disks = [
      { key: 'disk-2000', disk: await repo.openDisk(pointId, 'disk-2000') },
      { key: 'disk-2001', disk: await repo.openDisk(pointId, 'disk-2001') },
    ];
    const inThreadDelay = monitorEventLoopDelay({ resolution: 10 });
    inThreadDelay.enable();
    const inThreadBusy = performance.eventLoopUtilization();
    const inThread = await indexPoint(store, pointId, disks).finally(() => inThreadDelay.disable());
    const inThreadUse = performance.eventLoopUtilization(inThreadBusy).utilization;
    for (const { disk } of disks) await disk.close();
    await store.collectGarbage([], { graceMs: 0 }); // nothing indexed any more: the worker stores every page again

    const delay = monitorEventLoopDelay({ resolution: 10 });
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    delay.enable();
    const started = Date.now();
    const busy = performance.eventLoopUtilization();
    const threaded = await indexPointInWorker(opening(), pointId, ['disk-2000', 'disk-2001']).finally(() => {
      delay.disable();
      clearInterval(ticker);
    });
    const use = performance.eventLoopUtilization(busy).utilization;
    const ms = Date.now() - started;
    const maxMs = (h: typeof delay) => h.max / 1e6;
    console.log(
      `file index ${inThread.record.entries} entries: in-thread: event loop ${(100 * inThreadUse).toFixed(0)} % busy, ` +
        `max delay ${maxMs(inThreadDelay).toFixed(0)} ms; worker: ${ms} ms, event loop ${(100 * use).toFixed(0)} % busy, max delay ${maxMs(delay).toFixed(0)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(0)} ms, ${ticks} ticks (load ${os.loadavg()[0].toFixed(1)})`,
    );

    expect(inThread.record.entries).toBeGreaterThan(FILES);
    expect(inThread.record.warnings.some((w) => w.startsWith('disk-2001'))).toBe(true);
    expect(comparable(threaded.record)).toEqual(comparable(inThread.record));
    expect(threaded.newPages).toBe(inThread.newPages);
    expect(threaded.newBytes).toBeGreaterThan(0);
    expect(comparable((await store.getPoint(pointId))!)).toEqual(comparable(inThread.record));
    // The whole walk ran elsewhere: this thread stayed mostly idle and its timers kept firing.
    expect(use).toBeLessThan(0.25);
    expect(use).toBeLessThan(inThreadUse / 2);
    expect(maxMs(delay)).toBeLessThan(400);
    expect(ticks).toBeGreaterThan(ms / 10 / 4);
  });

  /** The backup hook as a finished backup job runs it, for the point's `disks`; phases it sets go to `phases`. */
  const runHook = (jobId: string, disks: string[], signal = new AbortController().signal, phases: string[] = []) =>
    indexBackupFiles({
      repo,
      reopen: opening(),
      job: { id: jobId, options: {} } as unknown as JobEntity,
      point: { id: `row-${jobId}`, repositoryPointId: pointId, disks: disks.map((key) => ({ key })) } as unknown as RestorePointEntity,
      phase: 'done',
      signal,
      log: { warn: () => undefined } as unknown as Logger,
      setPhase: async (p) => void phases.push(p),
    });

  it('the backup hook indexes on the worker: stats, warnings on the phase, interrupted on abort', async () => {
    const phases: string[] = [];
    const hook = (signal: AbortSignal) => runHook('job-1', ['disk-2000', 'disk-2001'], signal, phases);
    const done = await hook(new AbortController().signal);
    expect(phases).toEqual(['indexing guest files']);
    expect(done.stats).toMatchObject({ indexedFiles: (await FileIndexStore.forRepository(repo).getPoint(pointId))!.entries });
    expect(done.stats.indexedFiles).toBeGreaterThan(FILES);
    expect(done.phase).toBe('done; file index: disk-2001:0: not indexed: no known file system found');

    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('shutdown')), 200);
    expect((await hook(controller.signal)).phase).toBe('done; file index: interrupted');
  });

  it('the backup hook hands the worker the unwrapped keys: the KDF runs once per backup, not again on the worker', async () => {
    const hook = () => runHook('job-2', ['disk-2000']);
    // Without its key file the repository opens only with the keys themselves: the passphrase path (the KDF) fails.
    const keyFile = path.join(repoDir, 'key.json');
    await fs.rename(keyFile, `${keyFile}.away`);
    const scrypt = jest.spyOn(jest.requireActual<typeof import('node:crypto')>('node:crypto'), 'scrypt');
    try {
      await expect(indexPointInWorker(opening(), pointId, ['disk-2000'])).rejects.toThrow(/key file is missing/);
      const done = await hook();
      expect(done.phase).toBe('done');
      expect(done.stats.indexedFiles).toBeGreaterThan(FILES);
      expect(scrypt).not.toHaveBeenCalled();
    } finally {
      scrypt.mockRestore();
      await fs.rename(`${keyFile}.away`, keyFile);
    }
  });

  it('opens an s3:// repository with the S3 settings it is given', async () => {
    const s3 = await startS3(['threads']);
    const location = 's3://threads/repo';
    const runtime = { s3: { endpoint: s3.endpoint, region: s3.region, credentials: s3.credentials, forcePathStyle: true } };
    const bucketRepo = await Repository.init(location, {}, runtime);
    try {
      const tree = path.join(work, 'small');
      await fs.mkdir(path.join(tree, 'etc'), { recursive: true });
      await fs.writeFile(path.join(tree, 'etc', 'hostname'), 'threads\n');
      const image = path.join(work, 'small.img');
      await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, image, '8M']);
      const id = await writeImagePoint(bucketRepo, { 'disk-2000': image }, { vm: 'threads-s3' });

      const { record } = await indexPointInWorker({ location, runtime }, id, ['disk-2000']);
      expect(record.volumes).toEqual([expect.objectContaining({ volume: 'disk-2000:0', fsType: 'ext4' })]);
      const stored = await FileIndexStore.forRepository(bucketRepo).getPoint(id);
      expect(stored && comparable(stored)).toEqual(comparable(record));
      const pages = await Promise.all(record.pages.map((p) => FileIndexStore.forRepository(bucketRepo).getPage(p.id)));
      expect(pages.flat().map((e) => e.path)).toContain('/etc/hostname');
    } finally {
      await bucketRepo.close();
      await s3.stop();
    }
  });
});
