/**
 * File search across every repository of the appliance (GET /api/search/files). One VM's restore points lie in two
 * repositories — a plain one and an encrypted one (its index sealed with the repository's keys) — written and
 * indexed by the repository library from real ext4 images and attached through the API (which imports their
 * points). A second VM has a legacy point row (no repositoryId) in the default repository. A search finds files
 * from all three; a path present in both repositories is one hit whose versions list the points of both, oldest
 * first; `limit`/`truncated` apply to the merged result; an unindexed point is listed. A repository whose folder
 * is renamed after attach, and an S3 repository whose server has stopped, are skipped and reported; the others
 * are still searched.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { FileIndexStore, indexPoint } from '@vmkeep/file-index';
import { HostEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { writeImagePoint } from './peers/repository-points';
import { startApiApp } from './peers/api-app';
import { makeExt } from './peers/fs-images';
import { S3_TEST_CREDENTIALS, startS3, type S3Peer } from './peers/s3';

const REDIS_DB = 15; // shared by key: this suite enqueues nothing
const PASSPHRASE = 'offsite passphrase 42';
const HOST_ID = '6a1f0c9e-2b7d-4e5a-9c3b-0d8e7f6a5b41';
const VM_META = { vm: { name: 'web01', moref: 'vm-77' }, host: { id: HOST_ID, name: 'vc-old' } };
const MTIME = new Date('2025-03-04T05:06:07Z');

interface Tree {
  [file: string]: string;
}

/** An ext4 image of `files` (all with the same mtime, so equal content = equal version). */
async function extImage(work: string, name: string, files: Tree): Promise<string> {
  const tree = path.join(work, `tree-${name}`);
  for (const [file, content] of Object.entries(files)) {
    await fs.mkdir(path.join(tree, path.dirname(file)), { recursive: true });
    await fs.writeFile(path.join(tree, file), content);
    await fs.utimes(path.join(tree, file), MTIME, MTIME);
  }
  return makeExt(path.join(work, `${name}.img`), tree, { type: 'ext4', sizeMiB: 8 });
}

/** A committed point of `image` (as disk-2000), indexed unless `index` is false. */
async function backup(repo: Repository, image: string, meta: Record<string, unknown>, index = true): Promise<string> {
  const id = await writeImagePoint(repo, { 'disk-2000': image }, meta);
  if (index) {
    const opened = await repo.openDisk(id, 'disk-2000');
    try {
      await indexPoint(FileIndexStore.forRepository(repo), id, [{ key: 'disk-2000', disk: opened }]);
    } finally {
      await opened.close();
    }
  }
  await new Promise((r) => setTimeout(r, 5)); // distinct creation times (ms)
  return id;
}

describe('file search across repositories', () => {
  let work: string;
  let config: AppConfig;
  let app: INestApplication;
  let token: string;
  /** Restore point rows by repository point id. */
  const rowOf = new Map<string, RestorePointEntity>();
  const ids: Record<'a1' | 'b2' | 'a3' | 'a4' | 'legacy', string> = { a1: '', b2: '', a3: '', a4: '', legacy: '' };
  let web01: string;
  let db01: string;
  let s3: S3Peer | undefined;

  const search = (query: Record<string, string | number | boolean>) =>
    request(app.getHttpServer()).get('/api/search/files').query(query).set('Authorization', `Bearer ${token}`);

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-search-repos-'));
    const v1 = await extImage(work, 'v1', { 'etc/app.conf': 'one', 'home/alpha-notes.txt': 'alpha' });
    const v1b = await extImage(work, 'v1b', { 'etc/app.conf': 'one', 'srv/beta-ledger.txt': 'beta' });
    const v2 = await extImage(work, 'v2', { 'etc/app.conf': 'two!!', 'home/alpha-notes.txt': 'alpha' });
    const legacy = await extImage(work, 'legacy', { 'var/lib/gamma-db.conf': 'gamma' });

    const redis = new URL(process.env.TEST_REDIS_URL!);
    redis.pathname = `/${REDIS_DB}`;
    config = loadConfig(
      { VMKEEP_DATA_DIR: path.join(work, 'data'), REDIS_URL: redis.toString(), VMKEEP_API_HOST: '127.0.0.1', VMKEEP_ADMIN_PASSWORD: 'admin-pw-123' },
      work,
    );
    // Two repositories written before they are attached: points alternate between them in time.
    const plain = await Repository.init(path.join(work, 'plain'), {});
    const sealed = await Repository.init(path.join(work, 'sealed'), { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE });
    try {
      ids.a1 = await backup(plain, v1, VM_META);
      ids.b2 = await backup(sealed, v1b, VM_META);
      ids.a3 = await backup(plain, v2, VM_META);
      ids.a4 = await backup(plain, v2, VM_META, false); // indexing off
    } finally {
      await plain.close();
      await sealed.close();
    }
    const defaultRepo = await Repository.init(config.repositoryPath, {});
    try {
      ids.legacy = await backup(defaultRepo, legacy, {});
    } finally {
      await defaultRepo.close();
    }

    ({ app } = await startApiApp(config));
    const login = await request(app.getHttpServer()).post('/api/auth/login').send({ username: 'admin', password: 'admin-pw-123' }).expect(200);
    token = login.body.token;
    const auth = { Authorization: `Bearer ${token}` };
    await request(app.getHttpServer()).post('/api/repositories/attach').set(auth).send({ name: 'plain', location: path.join(work, 'plain') }).expect(201);
    const attached = await request(app.getHttpServer())
      .post('/api/repositories/attach')
      .set(auth)
      .send({ name: 'offsite', location: path.join(work, 'sealed'), passphrase: PASSPHRASE })
      .expect(201);
    expect(attached.body).toMatchObject({ imported: 1, repository: { encrypted: true } });

    // A second VM with a point row written before repositories were rows (no repositoryId, default folder).
    const data = app.get(DataSource);
    const host = await data.getRepository(HostEntity).save({ name: 'legacy-host', url: 'https://127.0.0.1:1/sdk', username: 'u', passwordSealed: 'x' });
    db01 = (await data.getRepository(VmEntity).save({ hostId: host.id, moref: 'vm-1', name: 'db01' })).id;
    await data.getRepository(RestorePointEntity).save({
      vmId: db01,
      jobId: null,
      repositoryPointId: ids.legacy,
      repositoryPath: config.repositoryPath,
      repositoryId: null,
      disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 8 * 1024 * 1024, fileName: '[ds] db01/db01.vmdk' }],
      sizeBytes: 0,
      storedBytes: 0,
    });
    for (const row of await data.getRepository(RestorePointEntity).find()) rowOf.set(row.repositoryPointId, row);
    web01 = rowOf.get(ids.a1)!.vmId;
    expect(new Set([ids.b2, ids.a3].map((id) => rowOf.get(id)!.vmId))).toEqual(new Set([web01]));
  }, 90_000);

  afterAll(async () => {
    await s3?.stop().catch(() => undefined);
    await app?.close();
    await closeSharedChunkWorkers();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const pointsOf = (...keys: (keyof typeof ids)[]) => keys.map((k) => expect.objectContaining({ id: rowOf.get(ids[k])!.id }));

  it('finds files of every repository, merging one path across repositories oldest first', async () => {
    const res = await search({ q: '*.conf' }).expect(200);
    expect(res.body).toMatchObject({ truncated: false, pointsSearched: 5, unindexedPoints: [rowOf.get(ids.a4)!.id] });
    expect(res.body.hits).toEqual([
      {
        vmId: web01,
        vmName: 'web01',
        volume: 'disk-2000:0',
        path: '/etc/app.conf',
        versions: [
          { type: 'file', size: 3, mtime: MTIME.toISOString(), points: pointsOf('a1', 'b2') }, // plain + encrypted
          { type: 'file', size: 5, mtime: MTIME.toISOString(), points: pointsOf('a3') },
        ],
      },
      expect.objectContaining({ vmId: db01, vmName: 'db01', path: '/var/lib/gamma-db.conf' }),
    ]);
  });

  it('finds a file that only the encrypted repository holds, and one only the plain one holds', async () => {
    const beta = await search({ q: 'beta-*', vm: web01 }).expect(200);
    expect(beta.body.hits).toEqual([expect.objectContaining({ path: '/srv/beta-ledger.txt', versions: [expect.objectContaining({ points: pointsOf('b2') })] })]);
    const alpha = await search({ q: 'ALPHA', vm: web01 }).expect(200);
    expect(alpha.body.hits).toEqual([expect.objectContaining({ path: '/home/alpha-notes.txt', versions: [expect.objectContaining({ points: pointsOf('a1', 'a3') })] })]);
    expect(alpha.body.pointsSearched).toBe(4);
  });

  it('applies limit and truncated to the merged result', async () => {
    // web01 has 3 distinct files (app.conf in both repositories counts once), db01 one.
    const all = await search({ q: '*', type: 'file', limit: 4 }).expect(200);
    expect(all.body.truncated).toBe(false);
    expect(all.body.hits.map((h: { path: string }) => h.path)).toEqual(['/etc/app.conf', '/home/alpha-notes.txt', '/srv/beta-ledger.txt', '/var/lib/gamma-db.conf']);
    const three = await search({ q: '*', type: 'file', limit: 3 }).expect(200);
    expect(three.body).toMatchObject({ truncated: true });
    expect(three.body.hits.map((h: { vmName: string }) => h.vmName)).toEqual(['web01', 'web01', 'web01']);
    const one = await search({ q: '*', type: 'file', limit: 1, vm: web01 }).expect(200);
    expect(one.body).toMatchObject({ truncated: true, hits: [expect.anything()] });
  });

  it('searches the other repositories when one folder is gone and S3 is unreachable, and reports the skipped ones', async () => {
    // A third repository on S3 (s3rver), holding a point of another VM, attached now.
    s3 = await startS3(['search']);
    const settings = { endpoint: s3.endpoint, region: s3.region, forcePathStyle: true };
    const remote = await Repository.init('s3://search/vmkeep', {}, { s3: { ...settings, credentials: { ...S3_TEST_CREDENTIALS } } });
    try {
      const mail = await extImage(work, 'mail', { 'etc/mail-relay.conf': 'relay' });
      await backup(remote, mail, { vm: { name: 'mail01', moref: 'vm-88' }, host: { id: HOST_ID, name: 'vc-old' } });
    } finally {
      await remote.close();
    }
    const attached = await request(app.getHttpServer())
      .post('/api/repositories/attach')
      .set('Authorization', `Bearer ${token}`)
      .send({ name: 'cloud', location: 's3://search/vmkeep', s3: { ...settings, ...S3_TEST_CREDENTIALS } })
      .expect(201);
    const cloudId = attached.body.repository.id as string;
    expect((await search({ q: 'mail-relay' }).expect(200)).body.hits).toEqual([expect.objectContaining({ vmName: 'mail01' })]);

    await s3.stop();
    s3 = undefined;
    const plain = path.join(work, 'plain');
    await fs.rename(plain, `${plain}-moved`);
    try {
      const res = await search({ q: '*.conf' }).expect(200);
      const plainId = rowOf.get(ids.a1)!.repositoryId;
      expect(res.body.unavailableRepositories).toEqual([
        { id: plainId, name: 'plain', location: plain, reason: expect.stringMatching(/^no repository at .*moved, removed or not mounted\?$/), points: 3 },
        { id: cloudId, name: 'cloud', location: 's3://search/vmkeep', reason: expect.stringMatching(/^storage s3:\/\/search\/vmkeep.*failed/), points: 1 },
      ]);
      expect(res.body).toMatchObject({ truncated: false, pointsSearched: 2, unindexedPoints: [] });
      expect(res.body.hits).toEqual([
        expect.objectContaining({ vmName: 'web01', path: '/etc/app.conf', versions: [expect.objectContaining({ points: pointsOf('b2') })] }),
        expect.objectContaining({ vmName: 'db01', path: '/var/lib/gamma-db.conf' }),
      ]);
      expect(JSON.stringify(res.body)).not.toContain(PASSPHRASE);
      // A bad pattern is still the caller's mistake, whatever repositories are readable.
      await search({ q: '[a-' }).expect(400);
    } finally {
      await fs.rename(`${plain}-moved`, plain);
    }
    const back = await search({ q: '*.conf', vm: web01 }).expect(200);
    expect(back.body).toMatchObject({ pointsSearched: 4, unavailableRepositories: [] });
  });
});
