/**
 * Browse sessions parse guest file systems on a worker thread of their own (`ThreadedFileBrowser`): a repository
 * point holds an ext4 disk with a folder of FILES files. The worker opens the repository itself (encrypted: with the
 * keys this thread unwrapped); a listing sorted by size (every entry's inode read) leaves this thread's event loop
 * nearly idle, where the same listing in this thread keeps it busy. Errors come back with their class and code.
 * A worker killed mid-request fails the request with a clear error, its session is dropped and the next request
 * opens a fresh worker; closing the session ends the thread. Through the API (`FileBrowseService`), the same
 * encrypted repository as the appliance's default one: the point (with its repositoryId) is browsed on a worker
 * opened with the keys the API unwrapped. An encrypted s3:// repository (s3rver) is browsed by a worker that opens
 * the bucket with the S3 settings it was given.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { threadId as mainThreadId, type Worker } from 'node:worker_threads';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig } from '@vmkeep/config';
import { VmkeepError } from '@vmkeep/contracts';
import { PathError } from '@vmkeep/filesystems';
import { HostEntity, RepositoryEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { Repository } from '@vmkeep/repository';
import { BrowseSessions, BrowseWorkerError, FileBrowser, FileBrowseService, GuestPathError, ThreadedFileBrowser } from '@vmkeep/restore';
import { writeImagePoint } from './peers/repository-points';
import { roleTokens, startApiApp } from './peers/api-app';
import { run } from './peers/fs-images';
import { startS3 } from './peers/s3';

const FILES = 6000;
const PASSPHRASE = 'browse-threads-passphrase';
/** Redis database of this suite's API (shared use of 15, keys of its own queue names are not touched). */
const REDIS_DB = 15;

const exited = (worker: Worker) => new Promise<number>((resolve) => worker.once('exit', resolve));

/** Event-loop utilisation of this thread while `work` runs. */
async function loopBusy<T>(work: () => Promise<T>): Promise<{ value: T; utilization: number }> {
  const before = performance.eventLoopUtilization();
  const value = await work();
  return { value, utilization: performance.eventLoopUtilization(before).utilization };
}

describe('browse sessions on worker threads', () => {
  let work: string;
  let repoDir: string;
  let repo: Repository;
  let pointId: string;
  let sessions: BrowseSessions<ThreadedFileBrowser>;
  let opened = 0;

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-browse-threads-'));
    const tree = path.join(work, 'tree');
    await fs.mkdir(path.join(tree, 'big'), { recursive: true });
    for (let i = 0; i < FILES; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, FILES - i) }, (_, j) => fs.writeFile(path.join(tree, 'big', `f-${String(i + j).padStart(5, '0')}`), 'x'.repeat((i + j) % 97))));
    }
    await fs.writeFile(path.join(tree, 'hello.txt'), 'hello, threads\n');
    const image = path.join(work, 'ext4.img');
    await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-N', String(FILES + 1024), '-d', tree, image, '48M']);
    await run('e2fsck', ['-fyD', image], [0, 1, 2]);
    await fs.rm(tree, { recursive: true });
    repoDir = path.join(work, 'repo');
    repo = await Repository.init(repoDir, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE });
    pointId = await writeImagePoint(repo, { 'disk-2000': image }, { vm: 'threads' });
    sessions = new BrowseSessions({
      open: async () => {
        opened++;
        const runtime = { unlockedKeys: repo.unlockedKeys()! };
        return ThreadedFileBrowser.open({ repository: { location: repoDir, runtime }, pointId, diskKeys: ['disk-2000'] }, { label: 'the test point' });
      },
    });
  });

  afterAll(async () => {
    await sessions?.shutdown();
    await repo?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('lists a large folder on the worker while this thread stays idle, with the same answer as in-thread', async () => {
    const threaded = await loopBusy(() => sessions.use(pointId, async (b) => ({ thread: b.threadId, page: await b.list(0, '/big', { sort: 'size', order: 'desc', limit: 50 }) })));
    expect(threaded.value.thread).not.toBe(mainThreadId);
    expect(threaded.value.page.total).toBe(FILES);
    expect(threaded.value.page.entries[0].size).toBe(96);
    expect(threaded.utilization).toBeLessThan(0.3);

    const local = await FileBrowser.open([{ key: 'disk-2000', disk: await repo.openDisk(pointId, 'disk-2000') }]);
    try {
      const inThread = await loopBusy(() => local.list(0, '/big', { sort: 'size', order: 'desc', limit: 50 }));
      expect(inThread.value).toEqual(threaded.value.page);
      expect(inThread.utilization).toBeGreaterThan(threaded.utilization);
      console.log(`event-loop utilisation during a sorted listing of ${FILES}: worker ${threaded.utilization.toFixed(3)}, in-thread ${inThread.utilization.toFixed(3)}`);
    } finally {
      await local.close();
    }
    // Opening the worker happened inside the measured call too; the answer itself is only waited for here.
    const again = await loopBusy(() => sessions.use(pointId, (b) => b.list(0, '/big', { sort: 'mtime', limit: 10 })));
    expect(again.value.total).toBe(FILES);
    expect(again.utilization).toBeLessThan(0.3);
  });

  it('reads files and keeps error classes and codes across the thread boundary', async () => {
    await sessions.use(pointId, async (b) => {
      const handle = await b.fileSystem(0).open('/hello.txt');
      expect((await handle.read(0, handle.size)).toString()).toBe('hello, threads\n');
      expect(await handle.extents()).toEqual([{ offset: 0, length: handle.size }]);
      const missing = await b.fileSystem(0).stat('/nope').catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(PathError);
      expect(missing).toMatchObject({ code: 'ENOENT', path: '/nope' });
      await expect(b.stat(0, '/nope')).rejects.toMatchObject({ code: 'not_found', constructor: VmkeepError });
      await expect(b.stat(0, '/big/../../etc')).rejects.toBeInstanceOf(GuestPathError);
      expect(() => b.fileSystem(7)).toThrow(/no volume 7/);
    });
  });

  it('fails the requests of a killed worker clearly, then opens a fresh one', async () => {
    const before = opened;
    let killedThread = 0;
    const { inFlight, after } = await sessions.use(pointId, async (b) => {
      killedThread = b.threadId;
      const listings = Array.from({ length: 8 }, () => b.list(0, '/big', { sort: 'size', limit: 10 }));
      await b.workerForTests.terminate();
      const settled = await Promise.allSettled(listings);
      return { inFlight: settled.filter((s) => s.status === 'rejected').map((s) => s.reason as unknown), after: await b.stat(0, '/').catch((e: unknown) => e) };
    });
    expect(inFlight.length).toBeGreaterThan(0);
    for (const failure of [...inFlight, after]) {
      expect(failure).toBeInstanceOf(BrowseWorkerError);
      expect(failure).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/file browsing thread of the test point stopped/) });
    }
    const page = await sessions.use(pointId, async (b) => {
      expect(b.threadId).not.toBe(killedThread);
      return b.list(0, '/', { sort: 'name' });
    });
    expect(page.entries.map((e) => e.name)).toEqual(['big', 'hello.txt', 'lost+found']);
    expect(opened).toBe(before + 1);
  });

  it('ends the worker thread when the session closes', async () => {
    const worker = await sessions.use(pointId, async (b) => b.workerForTests);
    const exit = exited(worker);
    await sessions.sweep(true);
    expect(sessions.size).toBe(0);
    await exit;
    expect(worker.threadId).toBe(-1);
  });

  it('browses an encrypted s3:// repository on a worker opened with the S3 settings and keys it is given', async () => {
    const s3 = await startS3(['browse']);
    const location = 's3://browse/repo';
    const s3Settings = { endpoint: s3.endpoint, region: s3.region, credentials: s3.credentials, forcePathStyle: true };
    const bucketRepo = await Repository.init(location, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE, s3: s3Settings });
    let browser: ThreadedFileBrowser | undefined;
    try {
      const id = await writeImagePoint(bucketRepo, { 'disk-2000': path.join(work, 'ext4.img') }, { vm: 'threads-s3' });
      const runtime = { s3: s3Settings, unlockedKeys: bucketRepo.unlockedKeys()! };
      browser = await ThreadedFileBrowser.open({ repository: { location, runtime }, pointId: id, diskKeys: ['disk-2000'] }, { label: 'the S3 point' });
      expect(browser.threadId).not.toBe(mainThreadId);
      const page = await browser.list(0, '/big', { sort: 'name', limit: 3 });
      expect(page.entries.map((e) => e.name)).toEqual(['f-00000', 'f-00001', 'f-00002']);
      const handle = await browser.fileSystem(0).open('/hello.txt');
      expect((await handle.read(0, handle.size)).toString()).toBe('hello, threads\n');
    } finally {
      await browser?.close();
      await bucketRepo.close();
      await s3.stop();
    }
  });

  it('serves the API from a worker opened with the keys the API unwrapped (point of a registered repository)', async () => {
    const redis = new URL(process.env.TEST_REDIS_URL!);
    redis.pathname = `/${REDIS_DB}`;
    const config = loadConfig(
      { VMKEEP_DATA_DIR: path.join(work, 'data'), VMKEEP_REPOSITORY: repoDir, VMKEEP_REPOSITORY_PASSPHRASE: PASSPHRASE, REDIS_URL: redis.toString(), VMKEEP_ADMIN_PASSWORD: 'admin-pw-123' },
      work,
    );
    const { app } = await startApiApp(config);
    try {
      const data = app.get(DataSource);
      const { viewer } = await roleTokens(app, 'admin-pw-123');
      const repository = await data.getRepository(RepositoryEntity).findOneByOrFail({ isDefault: true });
      const host = await data.getRepository(HostEntity).save({ name: 'vc1', url: 'https://vc1.invalid', username: 'u', passwordSealed: 'x' });
      const vm = await data.getRepository(VmEntity).save({ hostId: host.id, moref: 'vm-1', name: 'threads-vm' });
      const point = await data.getRepository(RestorePointEntity).save({
        vmId: vm.id,
        jobId: null,
        repositoryId: repository.id,
        repositoryPointId: pointId,
        repositoryPath: repoDir,
        disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 48 * 1024 * 1024, fileName: '[ds1] threads-vm/threads-vm.vmdk' }],
        sizeBytes: 48 * 1024 * 1024,
        storedBytes: 0,
      });
      const api = request(app.getHttpServer());
      const page = await api.get(`/api/restore-points/${point.id}/volumes/0/dir`).query({ path: '/big', sort: 'name', limit: 3 }).set('Authorization', `Bearer ${viewer}`).expect(200);
      expect(page.body).toMatchObject({ total: FILES, entries: [{ name: 'f-00000' }, { name: 'f-00001' }, { name: 'f-00002' }] });
      await api.get(`/api/restore-points/${point.id}/volumes/0/stat`).query({ path: '/nope' }).set('Authorization', `Bearer ${viewer}`).expect(404);
      const thread = await app.get(FileBrowseService).use(point.id, async (b) => b.threadId);
      expect(thread).not.toBe(mainThreadId);
    } finally {
      await app.close();
    }
  });
});
