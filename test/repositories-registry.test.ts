// RepositoriesService booted by Nest on a temp SQLite database (ConfigModule + PersistenceModule +
// RepositoriesModule, as the apps use them), against real repository folders: an appliance upgraded from the
// single-folder days (an unencrypted VMKEEP_REPOSITORY with a point whose row has no repositoryId) gets a default
// row that adopts the old point; a passphrase set later does not pretend the old folder is encrypted; every
// repository is opened once per process; an attached repository's points are imported under the registered host
// when it is known; passphrases are stored only sealed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Test, type TestingModule } from '@nestjs/testing';
import { getRepositoryToken } from '@nestjs/typeorm';
import type { Repository as Rows } from 'typeorm';
import { BufferDisk } from '@vmkeep/disk';
import { ConfigModule, loadConfig } from '@vmkeep/config';
import { HostEntity, PersistenceModule, RepositoryEntity, RestorePointEntity, SecretBox, VmEntity, openDataSource } from '@vmkeep/persistence';
import { RepositoriesModule, RepositoriesService, openPointRepository } from '@vmkeep/repositories';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';

const PASSPHRASE = 'registry passphrase 2b81f0';
const MiB = 1024 * 1024;

let dataDir: string;
let legacyDir: string;
let moduleRef: TestingModule;
let service: RepositoriesService;
let legacyPointId: string;
const saved = { ...process.env };

/** A repository with one committed point of a 2 MiB disk, meta as the backup job writes it. */
async function repositoryWithPoint(dir: string, meta: Record<string, unknown>, encrypt = false): Promise<string> {
  const repo = await Repository.init(dir, encrypt ? { encrypt: true, kdf: 'insecure-fast-for-tests' } : {}, encrypt ? { passphrase: PASSPHRASE } : {});
  const writer = repo.beginPoint();
  await writer.writeDisk('disk-2000', new BufferDisk(Buffer.alloc(2 * MiB, 7)), { meta: { deviceKey: 2000, label: 'Hard disk 1' } });
  const manifest = await writer.commit(meta);
  await repo.close();
  return manifest.id;
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-registry-'));
  legacyDir = path.join(dataDir, 'repository');
  legacyPointId = await repositoryWithPoint(legacyDir, { vm: { name: 'old-vm', moref: 'vm-1' } });
  Object.assign(process.env, { VMKEEP_DATA_DIR: dataDir, VMKEEP_REPOSITORY: legacyDir });
  delete process.env.DATABASE_URL;
  delete process.env.VMKEEP_SECRET_KEY;

  // The database as the single-folder appliance left it: a host, a VM and a point row without repositoryId.
  const ds = await openDataSource(loadConfig(process.env));
  const host = await ds.getRepository(HostEntity).save({ name: 'vc1', url: 'https://vc1', username: 'u', passwordSealed: 'x' });
  const vm = await ds.getRepository(VmEntity).save({ hostId: host.id, moref: 'vm-1', name: 'old-vm' });
  await ds.getRepository(RestorePointEntity).save({
    vmId: vm.id, jobId: null, repositoryPointId: legacyPointId, repositoryPath: legacyDir, disks: [], sizeBytes: 2 * MiB, storedBytes: 10,
  });
  await ds.destroy();

  process.env.VMKEEP_REPOSITORY_PASSPHRASE = PASSPHRASE; // set after the fact: the old folder stays unencrypted
  moduleRef = await Test.createTestingModule({ imports: [ConfigModule, PersistenceModule, RepositoriesModule] }).compile();
  await moduleRef.init();
  service = moduleRef.get(RepositoriesService);
}, 60_000);

afterAll(async () => {
  await moduleRef?.close();
  await closeSharedChunkWorkers();
  process.env = saved;
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('RepositoriesService', () => {
  it('registers the configured folder as the default repository and adopts the points written before', async () => {
    const [def] = await service.list();
    expect(def).toMatchObject({ name: 'default', location: legacyDir, isDefault: true, pointCount: 1, storedBytes: 10 });
    const points = moduleRef.get<Rows<RestorePointEntity>>(getRepositoryToken(RestorePointEntity));
    expect(await points.findOneByOrFail({ repositoryPointId: legacyPointId })).toMatchObject({ repositoryId: def.id });
  });

  it('opens each repository once per process, also for rows that only know the folder', async () => {
    const def = (await service.list())[0];
    const target = await service.forBackup();
    expect(target).toMatchObject({ id: def.id, location: legacyDir, folder: legacyDir });
    expect(await openPointRepository({ repositoryId: null, repositoryPath: legacyDir })).toBe(target.repository);
    expect(await openPointRepository({ repositoryId: def.id, repositoryPath: '/elsewhere' })).toBe(target.repository);
    expect((await target.repository.listPoints()).map((p) => p.id)).toEqual([legacyPointId]);
  });

  it('records that an existing unencrypted default folder stays unencrypted although a passphrase is set now', async () => {
    const rows = moduleRef.get<Rows<RepositoryEntity>>(getRepositoryToken(RepositoryEntity));
    expect(await rows.findOneByOrFail({ isDefault: true })).toMatchObject({ encrypted: false, passphraseSealed: null });
  });

  it('imports an attached repository under the registered host it names, and keeps its passphrase only sealed', async () => {
    const hosts = moduleRef.get<Rows<HostEntity>>(getRepositoryToken(HostEntity));
    const host = await hosts.findOneByOrFail({ name: 'vc1' });
    const dir = path.join(dataDir, 'second');
    const pointId = await repositoryWithPoint(dir, { vm: { name: 'new-vm', moref: 'vm-9', instanceUuid: 'uuid-9' }, host: { id: host.id, name: 'vc1' }, quiesced: true }, true);

    const result = await service.attach({ name: 'second', location: dir, passphrase: PASSPHRASE });
    expect(result).toMatchObject({ imported: 1, skipped: 0, vmsCreated: 1, repository: { encrypted: true, pointCount: 1 } });
    const vm = await moduleRef.get<Rows<VmEntity>>(getRepositoryToken(VmEntity)).findOneByOrFail({ moref: 'vm-9' });
    expect(vm).toMatchObject({ hostId: host.id, name: 'new-vm', instanceUuid: 'uuid-9', missing: true });
    const point = await moduleRef.get<Rows<RestorePointEntity>>(getRepositoryToken(RestorePointEntity)).findOneByOrFail({ repositoryPointId: pointId });
    expect(point).toMatchObject({ vmId: vm.id, repositoryId: result.repository.id, quiesced: true, disks: [expect.objectContaining({ key: 'disk-2000', deviceKey: 2000, capacityBytes: 2 * MiB })] });
    const disk = await (await openPointRepository(point)).openDisk(point.repositoryPointId, 'disk-2000');
    const head = await disk.read(0, 16);
    await disk.close();
    expect(head).toEqual(Buffer.alloc(16, 7));

    const row = await moduleRef.get<Rows<RepositoryEntity>>(getRepositoryToken(RepositoryEntity)).findOneByOrFail({ name: 'second' });
    expect(row.passphraseSealed).not.toContain(PASSPHRASE);
    expect(moduleRef.get(SecretBox).open(row.passphraseSealed!)).toBe(PASSPHRASE);
    expect(fs.readFileSync(path.join(dataDir, 'vmkeep.sqlite')).includes(PASSPHRASE)).toBe(false);
  });
  it('never creates the default folder anew while points are recorded in it: a missing folder is an error', async () => {
    // A second process (its own service, nothing opened yet) finds the folder gone, e.g. an unmounted share.
    const moved = `${legacyDir}.unmounted`;
    fs.renameSync(legacyDir, moved);
    const other = await Test.createTestingModule({ imports: [ConfigModule, PersistenceModule, RepositoriesModule] }).compile();
    await other.init();
    try {
      const fresh = other.get(RepositoriesService);
      await expect(fresh.forBackup()).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/missing, but 1 restore point\(s\) are recorded/) });
      expect(fs.existsSync(legacyDir)).toBe(false);
      fs.renameSync(moved, legacyDir); // storage back: the next attempt opens it
      expect((await (await fresh.forBackup()).repository.listPoints()).map((p) => p.id)).toEqual([legacyPointId]);
    } finally {
      if (fs.existsSync(moved)) fs.renameSync(moved, legacyDir);
      await other.close();
    }
  });
});
