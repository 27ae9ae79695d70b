/**
 * Guest file index end to end below the worker: BackupService backs up a vcsim VM whose first disk holds an ext4
 * file system (mke2fs -d) and whose second disk holds no file system; the hook indexes the committed point. The
 * ext4 tree is then changed (a file modified, one added, one removed) and backed up again (CBT incremental). The
 * second point stores only the pages that changed; search through the real HTTP API (and the CLI) finds every
 * path with the right versions per point; the disk without a file system is a warning, never a failed backup.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { DataSource } from 'typeorm';
import type { BackupService } from '@vmkeep/backup';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { FileIndexStore, type PointIndexRecord } from '@vmkeep/file-index';
import { JobEntity, openDataSource, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { connect } from '@vmkeep/vsphere';
import { startApiApp } from './peers/api-app';
import { backupServiceOn, saveVcsimVms } from './peers/backup-service';
import { runCliInProcess } from './peers/cli';
import { buildRandomZeroImage } from './peers/disk-images';
import { makeExt, run } from './peers/fs-images';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const REDIS_DB = 6;
const VM = 'file-index-vm';
const T0 = new Date('2025-03-01T10:00:00Z');
const T1 = new Date('2025-04-02T12:30:00Z');
/** Enough entries for several index pages (≈ 2048 entries each on average). */
const DATA_FILES = 15000;

interface Hit {
  vmName: string;
  volume: string;
  path: string;
  versions: { type: string; size: number; mtime: string; points: { id: string }[] }[];
}

async function write(root: string, rel: string, content: string, time: Date): Promise<void> {
  const file = path.join(root, rel);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, content);
  await fs.utimes(file, time, time);
}

/** The first tree: a few named files, DATA_FILES small files in 60 folders, a symlink. */
async function buildTree(root: string): Promise<void> {
  await write(root, 'etc/hostname', 'file-index-vm\n', T0);
  await write(root, 'etc/app.conf', 'mode=a\n', T0);
  await write(root, 'home/alice/notes.txt', 'remember the milk\n', T0);
  await write(root, 'home/alice/Report.DOCX', 'not really a docx', T0);
  for (let i = 0; i < DATA_FILES; i++) {
    await write(root, `data/d${String(i % 60).padStart(2, '0')}/file-${String(i).padStart(5, '0')}.dat`, `#${i}`, T0);
  }
  await fs.symlink('etc/hostname', path.join(root, 'link'));
  for (const dir of ['etc', 'home/alice', 'home', 'data']) await fs.utimes(path.join(root, dir), T0, T0);
}

describe('guest file index at backup time, search across restore points', () => {
  let work: string;
  let sim: VcsimInstance;
  let config: AppConfig;
  let db: DataSource;
  let service: BackupService;
  let vm: VmEntity;
  let app: INestApplication;
  let token: string;
  let v1Image: string;
  let v2Image: string;
  const store = () => FileIndexStore.forRepositoryFolder(config.repositoryPath);
  /** Index pages stored when each backup's snapshot removal was let through. */
  const pagesAtRemoval: number[] = [];
  const pagesWithin = async (ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const pages = (await store().storage.list('file-index/pages/')).length;
      if (pages > 0 || Date.now() > deadline) return pages;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-file-index-'));
    const tree1 = path.join(work, 'tree1');
    const tree2 = path.join(work, 'tree2');
    await buildTree(tree1);
    await run('cp', ['-a', tree1, tree2]);
    await write(tree2, 'etc/app.conf', 'mode=b\nverbose=true\n', T1);
    await write(tree2, 'home/alice/new-report.txt', 'quarterly numbers\n', T1);
    await fs.rm(path.join(tree2, 'home/alice/notes.txt'));
    await fs.utimes(path.join(tree2, 'home/alice'), T1, T1);
    v1Image = await makeExt(path.join(work, 'v1.img'), tree1, { type: 'ext4', sizeMiB: 64 });
    v2Image = await makeExt(path.join(work, 'v2.img'), tree2, { type: 'ext4', sizeMiB: 64 });
    const noFs = await buildRandomZeroImage({ dir: work, seed: 'file-index', sizeMiB: 4 });
    sim = await startVcsim({ seed: [{ name: VM, disks: [{ image: v1Image }, { image: noFs.path }] }] });

    const redis = new URL(process.env.TEST_REDIS_URL!);
    redis.pathname = `/${REDIS_DB}`;
    config = loadConfig(
      { VMKEEP_DATA_DIR: path.join(work, 'data'), VMKEEP_CHUNK_SIZE: String(256 * 1024), REDIS_URL: redis.toString(), VMKEEP_API_HOST: '127.0.0.1' },
      work,
    );
    db = await openDataSource(config);
    vm = (await saveVcsimVms(db, sim, [VM])).get(VM)!;
    service = backupServiceOn(db, config, async () => {
      const session = await connect({ url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint });
      const remove = session.removeSnapshot.bind(session);
      // The removal waits (at most 60 s) until the index has stored a page: it only finds one if the index runs
      // alongside the removal instead of after it.
      session.removeSnapshot = async (ref) => {
        pagesAtRemoval.push(await pagesWithin(60_000));
        return remove(ref);
      };
      return session;
    });

    ({ app } = await startApiApp(config));
    const password = (await fs.readFile(config.admin.passwordFile, 'utf8')).trim();
    const login = await request(app.getHttpServer()).post('/api/auth/login').send({ username: 'admin', password }).expect(200);
    token = login.body.token;
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    await sim?.stop();
    await closeSharedChunkWorkers();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  async function backup(options: Record<string, unknown> = {}) {
    const job = await db.getRepository(JobEntity).save({ type: 'backup', state: 'queued', vmId: vm.id, options });
    const state = await service.run(job.id);
    const done = (await db.getRepository(JobEntity).findOneBy({ id: job.id }))!;
    expect({ state, error: done.error }).toEqual({ state: 'succeeded', error: null });
    const point = (await db.getRepository(RestorePointEntity).findOneBy({ id: done.restorePointId! }))!;
    return { job: done, point };
  }

  async function search(query: Record<string, string>, expectStatus = 200) {
    const res = await request(app.getHttpServer())
      .get('/api/search/files')
      .query(query)
      .set('Authorization', `Bearer ${token}`)
      .expect(expectStatus);
    return res.body as { hits: Hit[]; truncated: boolean; pointsSearched: number; unindexedPoints: string[]; message?: string };
  }

  let first: Awaited<ReturnType<typeof backup>>;
  let second: Awaited<ReturnType<typeof backup>>;
  let record1: PointIndexRecord;
  let record2: PointIndexRecord;

  it('indexes the first point; the disk without a file system is a warning and the backup succeeds', async () => {
    first = await backup();
    const stats = first.job.stats!;
    // Every entry of the tree: 4 named files, DATA_FILES data files in 60 folders, data, etc, home, home/alice, link, lost+found.
    expect(stats.indexedFiles).toBe(4 + DATA_FILES + 60 + 6);
    expect(stats.indexNewPages).toBe(stats.indexPages);
    expect(stats.indexPages).toBeGreaterThanOrEqual(6);
    // Indexing started once the point was committed, while the host was still removing the snapshot.
    expect(pagesAtRemoval[0]).toBeGreaterThan(0);
    const [ext4Key, noFsKey] = first.point.disks.map((d) => d.key);
    expect(first.job.phase).toMatch(new RegExp(`^done; .*file index: ${noFsKey}:0: not indexed: no known file system found$`));

    record1 = (await store().getPoint(first.point.repositoryPointId))!;
    expect(record1.volumes).toEqual([
      { volume: `${ext4Key}:0`, fsType: 'ext4', label: 'vmkeep-ext4', entries: stats.indexedFiles, dirty: false },
      { volume: `${noFsKey}:0`, fsType: '', label: '', entries: 0, dirty: false },
    ]);
    expect(record1.warnings).toEqual([`${noFsKey}:0: not indexed: no known file system found`]);
    expect(record1.partial).toBe(false);
  });

  it('the second point (files changed, added, removed) stores only the changed pages', async () => {
    const flat = sim.vms.find((v) => v.name === VM)!.disks[0].localPath.replace(/\.vmdk$/, '-flat.vmdk');
    await fs.copyFile(v2Image, flat);
    second = await backup();
    expect(second.point.disks[0].backupMode).toBe('incremental');
    const stats = second.job.stats!;
    expect(stats.indexedFiles).toBe(first.job.stats!.indexedFiles); // one added, one removed

    record2 = (await store().getPoint(second.point.repositoryPointId))!;
    const before = new Set(record1.pages.map((p) => p.id));
    const reused = record2.pages.filter((p) => before.has(p.id)).length;
    expect(stats.indexNewPages).toBe(record2.pages.length - reused);
    expect(stats.indexNewPages).toBeGreaterThanOrEqual(1);
    expect(stats.indexNewPages).toBeLessThanOrEqual(3);
    expect(reused).toBeGreaterThanOrEqual(record2.pages.length - 3);

    // What is stored is the union of both points' pages: unchanged pages exist once.
    const objects = await store().storage.list('file-index/pages/');
    expect(objects.length).toBe(new Set([...before, ...record2.pages.map((p) => p.id)]).size);
  });

  it('finds files with their versions per restore point through the API', async () => {
    const [p1, p2] = [first.point.id, second.point.id];
    const conf = await search({ q: 'app.conf', vm: vm.id });
    expect(conf).toMatchObject({ truncated: false, pointsSearched: 2, unindexedPoints: [] });
    expect(conf.hits).toEqual([
      {
        vmId: vm.id,
        vmName: VM,
        volume: `${first.point.disks[0].key}:0`,
        path: '/etc/app.conf',
        versions: [
          { type: 'file', size: 7, mtime: T0.toISOString(), points: [{ id: p1, createdAt: expect.any(String) }] },
          { type: 'file', size: 20, mtime: T1.toISOString(), points: [{ id: p2, createdAt: expect.any(String) }] },
        ],
      },
    ]);

    const pointsOf = (hits: Hit[]) => hits.map((h) => [h.path, h.versions.map((v) => v.points.map((p) => p.id))]);
    expect(pointsOf((await search({ q: 'hostname' })).hits)).toEqual([['/etc/hostname', [[p1, p2]]]]);
    expect(pointsOf((await search({ q: 'notes.txt' })).hits)).toEqual([['/home/alice/notes.txt', [[p1]]]]);
    expect(pointsOf((await search({ q: '/home/**.txt' })).hits)).toEqual([
      ['/home/alice/new-report.txt', [[p2]]],
      ['/home/alice/notes.txt', [[p1]]],
    ]);
    // Case: insensitive by default, exact on request; a glob over the data files; a type filter.
    expect((await search({ q: 'REPORT.docx' })).hits.map((h) => h.path)).toEqual(['/home/alice/Report.DOCX']);
    expect((await search({ q: 'REPORT.docx', ignoreCase: 'false' })).hits).toEqual([]);
    const data = await search({ q: 'file-0012?.dat', limit: '5' });
    expect(data.hits.map((h) => h.path)).toEqual([
      '/data/d00/file-00120.dat',
      '/data/d01/file-00121.dat',
      '/data/d02/file-00122.dat',
      '/data/d03/file-00123.dat',
      '/data/d04/file-00124.dat',
    ]);
    expect(data.truncated).toBe(true);
    expect((await search({ q: 'link', type: 'symlink' })).hits.map((h) => [h.path, h.versions[0].size])).toEqual([['/link', 12]]);

    const bad = await search({ q: '[oops' }, 400);
    expect(bad.message).toMatch(/unbalanced/);
    await request(app.getHttpServer()).get('/api/search/files?q=x').expect(401);
  });

  it('a backup with indexFiles off has no index: search says which points it could not search', async () => {
    const third = await backup({ indexFiles: false });
    expect(third.job.stats!.indexedFiles).toBeUndefined();
    expect(await store().getPoint(third.point.repositoryPointId)).toBeUndefined();
    const result = await search({ q: 'app.conf', vm: vm.id });
    expect(result.unindexedPoints).toEqual([third.point.id]);
    expect(result.hits[0].versions.map((v) => v.points.length)).toEqual([1, 1]);
  });

  it('vmkeep files find PATTERN --vm VM (CLI against the same API)', async () => {
    const address = app.getHttpServer().address() as { port: number };
    const url = `http://127.0.0.1:${address.port}`;
    const cli = (args: string[]) => runCliInProcess([...args, '--url', url, '--token', token], { home: work });
    const found = await cli(['files', 'find', 'new-report', '--vm', VM, '--json']);
    expect(found.code).toBe(0);
    const result = JSON.parse(found.stdout) as { hits: Hit[] };
    expect(result.hits.map((h) => [h.path, h.versions.map((v) => v.points.map((p) => p.id))])).toEqual([
      ['/home/alice/new-report.txt', [[second.point.id]]],
    ]);
    const table = await cli(['files', 'find', '*.conf']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^VM\s+PATH\s+TYPE\s+SIZE\s+MODIFIED\s+POINTS\n/);
    expect(table.stdout).toMatch(new RegExp(`${VM}\\s+${first.point.disks[0].key}:0/etc/app.conf\\s+file\\s+.*2025-04-02T12:30:00.000Z\\s+1: ${second.point.id}`));
  });

  it('the next backup drops the index record of a deleted point; search lists that point as unindexed', async () => {
    const repo = await Repository.open(config.repositoryPath);
    await repo.deletePoint(first.point.repositoryPointId);
    expect(await store().getPoint(first.point.repositoryPointId)).toBeDefined();
    await backup();
    expect(await store().getPoint(first.point.repositoryPointId)).toBeUndefined();
    const result = await search({ q: 'notes.txt', vm: vm.id });
    expect(result.hits).toEqual([]);
    expect(result.unindexedPoints).toContain(first.point.id);
    // The pages are still referenced by the second point or younger than the GC grace period: none is missing.
    expect((await search({ q: 'hostname', vm: vm.id })).hits[0].versions[0].points.length).toBe(2);
  });
});
