/**
 * The guest file index of an ENCRYPTED repository: a real ext4 image (mke2fs -d) is backed up into an encrypted
 * repository, indexed through the same call the backup hook makes (`FileIndexStore.forRepository`) and searched.
 * Every stored index object (pages and the point record) is sealed: no guest file name, folder name or volume
 * label appears in clear, page ids are keyed (not the SHA-256 of the body), the index cannot be read without the
 * passphrase (typed ENCRYPTED error), and a tampered page is a PAGE_CORRUPT error, never wrong results. Last, the
 * API's file search (GET /api/search/files) finds the file on an appliance whose default repository is that
 * encrypted one (VMKEEP_REPOSITORY_PASSPHRASE).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { FileIndexError, FileIndexStore, encodePage, indexPoint, searchPoints } from '@vmkeep/file-index';
import { HostEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { writeImagePoint } from './peers/repository-points';
import { startApiApp } from './peers/api-app';
import { makeExt } from './peers/fs-images';

const REDIS_DB = 15;

const PASSPHRASE = 'correct horse battery staple';
/** Names that must never be readable in the stored index. */
const SECRET_NAMES = ['zebra-ledger-2025.xlsx', 'confidential-merger-plan.odt', 'payroll-archive', 'carol-private'];

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

describe('file index of an encrypted repository', () => {
  let work: string;
  let config: AppConfig;
  let repo: Repository;
  let pointId: string;
  let pageIds: string[];

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-file-index-enc-'));
    const tree = path.join(work, 'tree');
    await fs.mkdir(path.join(tree, 'home/carol-private/payroll-archive'), { recursive: true });
    await fs.writeFile(path.join(tree, 'home/carol-private', SECRET_NAMES[0]), 'numbers');
    await fs.writeFile(path.join(tree, 'home/carol-private/payroll-archive', SECRET_NAMES[1]), 'plan');
    for (let i = 0; i < 1500; i++) await fs.writeFile(path.join(tree, 'home/carol-private/payroll-archive', `slip-${i}.pdf`), '');
    const image = await makeExt(path.join(work, 'ext4.img'), tree, { type: 'ext4', sizeMiB: 16 });

    const redis = new URL(process.env.TEST_REDIS_URL!);
    redis.pathname = `/${REDIS_DB}`;
    config = loadConfig(
      { VMKEEP_DATA_DIR: path.join(work, 'data'), REDIS_URL: redis.toString(), VMKEEP_API_HOST: '127.0.0.1', VMKEEP_ADMIN_PASSWORD: 'admin-pw-123', VMKEEP_REPOSITORY_PASSPHRASE: PASSPHRASE },
      work,
    );
    // The appliance's default repository, encrypted (it opens it with VMKEEP_REPOSITORY_PASSPHRASE).
    repo = await Repository.init(config.repositoryPath, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE });
    pointId = await writeImagePoint(repo, { 'disk-2000': image }, { vm: 'enc-vm' });

    const opened = await repo.openDisk(pointId, 'disk-2000');
    try {
      const result = await indexPoint(FileIndexStore.forRepository(repo), pointId, [{ key: 'disk-2000', disk: opened }]);
      expect(result.record).toMatchObject({ entries: 1500 + 6, partial: false, warnings: [] });
      expect(result.newPages).toBeGreaterThanOrEqual(2);
      pageIds = result.record.pages.map((p) => p.id);
    } finally {
      await opened.close();
    }
  }, 60_000);

  afterAll(async () => {
    await repo?.close();
    await closeSharedChunkWorkers();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('searches the sealed index with the repository open', async () => {
    const found = await searchPoints(FileIndexStore.forRepository(repo), [pointId], '*.xlsx');
    expect(found.unindexedPoints).toEqual([]);
    expect(found.hits).toEqual([
      { volume: 'disk-2000:0', path: `/home/carol-private/${SECRET_NAMES[0]}`, versions: [expect.objectContaining({ type: 'file', size: 7, points: [pointId] })] },
    ]);
    const slips = await searchPoints(FileIndexStore.forRepository(repo), [pointId], 'slip-1*.pdf', { limit: 5000 });
    expect(slips.hits.length).toBe(1 + 10 + 100 + 500); // slip-1, slip-10…19, slip-100…199, slip-1000…1499
    const record = await FileIndexStore.forRepository(repo).getPoint(pointId);
    expect(record?.volumes).toEqual([{ volume: 'disk-2000:0', fsType: 'ext4', label: 'vmkeep-ext4', entries: 1506, dirty: false }]);
  });

  it('stores no file name, folder name or label in clear, and keys page ids', async () => {
    const files = await filesUnder(path.join(repo.dir, 'file-index'));
    expect(files.length).toBe(pageIds.length + 1);
    for (const file of files) {
      const bytes = await fs.readFile(file);
      expect(bytes.subarray(0, 8).toString('latin1')).toBe('VMKIDX2\n');
      for (const needle of [...SECRET_NAMES, 'slip-', 'vmkeep-ext4', 'ext4', 'disk-2000:0', '/home']) {
        expect({ file: path.basename(file), leaks: bytes.includes(Buffer.from(needle, 'utf8')) }).toEqual({ file: path.basename(file), leaks: false });
      }
    }
    // The same entries in a plain index would have SHA-256 ids; the keyed ids differ from them.
    const record = (await FileIndexStore.forRepository(repo).getPoint(pointId))!;
    const plainIds = [];
    for (const ref of record.pages) plainIds.push(encodePage(await FileIndexStore.forRepository(repo).getPage(ref.id)).id);
    expect(plainIds.filter((id) => pageIds.includes(id))).toEqual([]);
  });

  it('refuses to read without the keys, and detects a tampered page', async () => {
    const plain = FileIndexStore.forRepositoryFolder(repo.dir);
    await expect(plain.getPoint(pointId)).rejects.toMatchObject({ name: 'FileIndexError', code: 'ENCRYPTED' });
    await expect(plain.getPage(pageIds[0])).rejects.toMatchObject({ code: 'ENCRYPTED' });

    const key = FileIndexStore.pageKey(pageIds[0]);
    const original = (await repo.storage.get(key))!;
    const tampered = Buffer.from(original);
    tampered[tampered.length - 20] ^= 1;
    await repo.storage.put(key, tampered);
    try {
      const err = await FileIndexStore.forRepository(repo).getPage(pageIds[0]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FileIndexError);
      expect(err).toMatchObject({ code: 'PAGE_CORRUPT', message: expect.stringMatching(/authentication failed/) });
    } finally {
      await repo.storage.put(key, original);
    }
  });

  it('a different repository (other master keys) cannot read it', async () => {
    const other = await Repository.init(path.join(work, 'other'), { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE });
    try {
      const foreign = new FileIndexStore(repo.storage, { sealer: other.subkeySealer('file-index') });
      await expect(foreign.getPoint(pointId)).rejects.toMatchObject({ code: 'RECORD_CORRUPT' });
      await expect(foreign.getPage(pageIds[0])).rejects.toMatchObject({ code: 'PAGE_CORRUPT' });
    } finally {
      await other.close();
    }
  });

  it('is searched through the API of an appliance whose default repository is encrypted', async () => {
    const { app } = await startApiApp(config);
    try {
      const data = app.get(DataSource);
      const host = await data.getRepository(HostEntity).save({ name: 'enc-host', url: 'https://127.0.0.1:1/sdk', username: 'u', passwordSealed: 'x' });
      const vm = await data.getRepository(VmEntity).save({ hostId: host.id, moref: 'vm-1', name: 'enc-vm' });
      const point = await data.getRepository(RestorePointEntity).save({
        vmId: vm.id,
        jobId: null,
        repositoryPointId: pointId,
        repositoryPath: config.repositoryPath,
        disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 16 * 1024 * 1024, fileName: '[ds] enc-vm/enc-vm.vmdk' }],
        sizeBytes: 0,
        storedBytes: 0,
      });
      const login = await request(app.getHttpServer()).post('/api/auth/login').send({ username: 'admin', password: 'admin-pw-123' }).expect(200);
      const res = await request(app.getHttpServer())
        .get('/api/search/files')
        .query({ q: 'confidential-*' })
        .set('Authorization', `Bearer ${login.body.token}`)
        .expect(200);
      expect(res.body).toMatchObject({ truncated: false, pointsSearched: 1, unindexedPoints: [] });
      expect(res.body.hits).toEqual([
        expect.objectContaining({
          vmName: 'enc-vm',
          path: `/home/carol-private/payroll-archive/${SECRET_NAMES[1]}`,
          versions: [expect.objectContaining({ type: 'file', size: 4, points: [expect.objectContaining({ id: point.id })] })],
        }),
      ]);
    } finally {
      await app.close();
    }
  });
});
