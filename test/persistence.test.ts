// libs/persistence against real databases: a temp SQLite file and a fresh database on the MariaDB test peer.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DataSource, In } from 'typeorm';
import { AppConfig, loadConfig } from '@vmkeep/config';
import {
  ApiTokenEntity,
  AuditLogEntity,
  hashPassword,
  hashToken,
  HostEntity,
  JobEntity,
  MIGRATIONS,
  newToken,
  openDataSource,
  RestorePointEntity,
  SecretBox,
  SecretError,
  UserEntity,
  VmDiskEntity,
  VmEntity,
  verifyPassword,
  loadOrCreateSecretKey,
} from '@vmkeep/persistence';
import { createDatabase, dropDatabase } from './peers/mariadb';

/** Above 2^32 and 2^53-safe: catches 32-bit truncation and string/number mix-ups of BIGINT columns. */
const HUGE = 5 * 2 ** 32 + 12345;
const CHEAP_SCRYPT = { N: 1024, r: 8, p: 1 };
const TABLES = ['users', 'api_tokens', 'hosts', 'vms', 'vm_disks', 'jobs', 'restore_points', 'audit_log', 'policies', 'policy_runs', 'webhooks', 'webhook_deliveries', 'instant_sessions', 'repositories'];

interface Target {
  name: string;
  /** Returns the DATABASE_URL of a fresh, empty database and a cleanup. */
  fresh(): Promise<{ databaseUrl: string; cleanup(): Promise<void> }>;
}

const targets: Target[] = [
  {
    name: 'SQLite',
    fresh: async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-persistence-'));
      return {
        // A folder that does not exist yet: dataSourceOptions must create it.
        databaseUrl: `sqlite:${path.join(dir, 'nested', 'vmkeep.sqlite')}`,
        cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'MariaDB',
    fresh: async () => {
      const serverUrl = process.env.TEST_MYSQL_URL;
      if (!serverUrl) throw new Error('TEST_MYSQL_URL is not set: run through jest (test/peers/global-setup.ts)');
      const name = `vmkeep_persistence_${process.pid}`;
      return {
        databaseUrl: await createDatabase(serverUrl, name),
        cleanup: () => dropDatabase(serverUrl, name),
      };
    },
  },
];

function configFor(databaseUrl: string, dataDir: string): AppConfig {
  return loadConfig({ DATABASE_URL: databaseUrl, VMKEEP_DATA_DIR: dataDir }, dataDir);
}

/**
 * Queries the schema builder would run to make the database match the entities. One known false positive is
 * dropped: TypeORM's mysql mode reads MariaDB's COLUMN_DEFAULT "NULL" (reported for every nullable column without
 * a default) as the string 'NULL', and proposes re-declaring such a column unchanged. Only a query that restates
 * exactly the column TypeORM would create is dropped, and only for nullable entity columns without a default.
 */
async function pendingSchemaQueries(ds: DataSource): Promise<string[]> {
  const log = await ds.driver.createSchemaBuilder().log();
  const queries = log.upQueries.map((q) => q.query);
  if (ds.driver.options.type !== 'mysql') return queries;
  return queries.filter((query) => {
    const m = /^ALTER TABLE `(\w+)` CHANGE `(\w+)` `\2` (.+) NULL$/.exec(query);
    if (!m) return true;
    const column = ds.entityMetadatas.find((e) => e.tableName === m[1])?.findColumnWithDatabaseName(m[2]);
    if (!column || !column.isNullable || column.default !== undefined) return true;
    return m[3] !== ds.driver.createFullType({ ...column, type: ds.driver.normalizeType(column), length: ds.driver.getColumnLength(column) } as never);
  });
}

async function existingTables(ds: DataSource): Promise<string[]> {
  const runner = ds.createQueryRunner();
  try {
    const found: string[] = [];
    for (const table of TABLES) if (await runner.hasTable(table)) found.push(table);
    return found;
  } finally {
    await runner.release();
  }
}

/** Whole seconds: MySQL DATETIME without fractional precision drops milliseconds. */
function second(iso: string): Date {
  return new Date(iso);
}

describe.each(targets)('persistence on $name', (target) => {
  let ds: DataSource;
  let config: AppConfig;
  let dataDir: string;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-persistence-data-'));
    const fresh = await target.fresh();
    cleanup = fresh.cleanup;
    config = configFor(fresh.databaseUrl, dataDir);
    ds = await openDataSource(config);
  });

  afterAll(async () => {
    if (ds?.isInitialized) await ds.destroy();
    await cleanup?.();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs every migration on open and records it', async () => {
    expect(await ds.showMigrations()).toBe(false);
    const rows: Array<{ name: string }> = await ds.query('SELECT name FROM migrations ORDER BY id');
    expect(rows.map((r) => r.name)).toEqual(MIGRATIONS.map((m) => new m().name));
    expect(await existingTables(ds)).toEqual(TABLES);
    expect(ds.options.synchronize).toBe(false);
  });

  it('builds exactly the schema the entities describe', async () => {
    expect(ds.entityMetadatas.map((m) => m.tableName).sort()).toEqual([...TABLES].sort());
    expect(await pendingSchemaQueries(ds)).toEqual([]);
  });

  it('round-trips every entity, including bigint sizes above 2^32 and JSON columns', async () => {
    const users = ds.getRepository(UserEntity);
    const user = await users.save(
      users.create({ username: 'alice', passwordHash: await hashPassword('pw', CHEAP_SCRYPT), role: 'operator' }),
    );
    const loadedUser = await users.findOneByOrFail({ id: user.id });
    expect(loadedUser).toMatchObject({ username: 'alice', role: 'operator', disabled: false });
    expect(loadedUser.createdAt).toBeInstanceOf(Date);
    expect(Math.abs(loadedUser.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
    expect(await verifyPassword('pw', loadedUser.passwordHash)).toBe(true);

    const tokens = ds.getRepository(ApiTokenEntity);
    const token = newToken();
    await tokens.save(
      tokens.create({
        userId: user.id,
        name: 'ci',
        kind: 'api',
        tokenHash: hashToken(token),
        expiresAt: second('2031-05-06T07:08:09Z'),
        lastUsedAt: null,
      }),
    );
    const loadedToken = await tokens.findOneOrFail({ where: { tokenHash: hashToken(token) }, relations: { user: true } });
    expect(loadedToken).toMatchObject({ name: 'ci', kind: 'api', lastUsedAt: null });
    expect(loadedToken.expiresAt?.toISOString()).toBe('2031-05-06T07:08:09.000Z');
    expect(loadedToken.user?.username).toBe('alice');

    const hosts = ds.getRepository(HostEntity);
    const box = new SecretBox(loadOrCreateSecretKey(config));
    const host = await hosts.save(
      hosts.create({
        name: 'vc1',
        url: 'https://vc1.example.test',
        username: 'administrator@vsphere.local',
        passwordSealed: box.seal('pw'),
        thumbprint: 'AA:BB',
      }),
    );
    const loadedHost = await hosts.findOneByOrFail({ id: host.id });
    expect(loadedHost).toMatchObject({ name: 'vc1', insecure: false, thumbprint: 'AA:BB', apiType: null });
    expect(loadedHost.updatedAt).toBeInstanceOf(Date);

    const vms = ds.getRepository(VmEntity);
    const vm = await vms.save(
      vms.create({ hostId: host.id, moref: 'vm-42', name: 'web01', powerState: 'poweredOn', lastSeenAt: second('2030-01-02T03:04:05Z') }),
    );
    const disks = ds.getRepository(VmDiskEntity);
    await disks.save([
      disks.create({ vmId: vm.id, deviceKey: 2000, label: 'Hard disk 1', capacityBytes: HUGE, fileName: '[ds1] web01/web01.vmdk' }),
      disks.create({ vmId: vm.id, deviceKey: 2001, label: 'Hard disk 2', capacityBytes: 1024, fileName: '[ds1] web01/web01_1.vmdk', datastore: 'ds1' }),
    ]);
    const loadedVm = await vms.findOneOrFail({ where: { id: vm.id }, relations: { disks: true, host: true } });
    expect(loadedVm).toMatchObject({ moref: 'vm-42', missing: false, powerState: 'poweredOn' });
    expect(loadedVm.lastSeenAt?.toISOString()).toBe('2030-01-02T03:04:05.000Z');
    expect(loadedVm.host?.name).toBe('vc1');
    const byKey = [...(loadedVm.disks ?? [])].sort((a, b) => a.deviceKey - b.deviceKey);
    expect(byKey.map((d) => [d.deviceKey, d.capacityBytes, d.datastore])).toEqual([
      [2000, HUGE, null],
      [2001, 1024, 'ds1'],
    ]);
    expect(typeof byKey[0].capacityBytes).toBe('number');

    const jobs = ds.getRepository(JobEntity);
    const job = await jobs.save(
      jobs.create({ type: 'backup', state: 'queued', vmId: vm.id, requestedBy: user.id, options: { quiesce: true } }),
    );
    const queued = await jobs.findOneByOrFail({ id: job.id });
    expect(queued).toMatchObject({ progress: 0, bytesDone: 0, bytesTotal: 0, speed: 0, cancelRequested: false, error: null });
    await jobs.update(job.id, {
      state: 'succeeded',
      progress: 100,
      bytesDone: HUGE,
      bytesTotal: HUGE,
      speed: 123456.5,
      stats: { newChunks: 7, zeroChunks: 3 },
      startedAt: second('2030-01-02T03:04:05Z'),
      finishedAt: second('2030-01-02T03:09:05Z'),
    });
    const done = await jobs.findOneByOrFail({ id: job.id });
    expect(done).toMatchObject({
      state: 'succeeded',
      progress: 100,
      bytesDone: HUGE,
      bytesTotal: HUGE,
      speed: 123456.5,
      options: { quiesce: true },
      stats: { newChunks: 7, zeroChunks: 3 },
    });
    expect(done.finishedAt!.getTime() - done.startedAt!.getTime()).toBe(300_000);
    expect(await jobs.countBy({ state: 'succeeded' })).toBe(1);

    const points = ds.getRepository(RestorePointEntity);
    const diskList = [
      { deviceKey: 2000, label: 'Hard disk 1', capacityBytes: HUGE, fileName: '[ds1] web01/web01.vmdk', key: 'scsi0-0' },
    ];
    const point = await points.save(
      points.create({ vmId: vm.id, jobId: job.id, repositoryPointId: 'p-1', repositoryPath: '/repo', disks: diskList, sizeBytes: HUGE, storedBytes: 4096 }),
    );
    const loadedPoint = await points.findOneByOrFail({ id: point.id });
    expect(loadedPoint).toMatchObject({ kind: 'backup', quiesced: false, sizeBytes: HUGE, storedBytes: 4096, disks: diskList });

    const audit = ds.getRepository(AuditLogEntity);
    await audit.save(audit.create({ userId: user.id, username: 'alice', action: 'host.create', target: host.id, detail: { name: 'vc1' } }));
    const entries = await audit.find({ order: { at: 'DESC' } });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ action: 'host.create', detail: { name: 'vc1' }, target: host.id });

    // Deleting a host cascades to its VMs and their disks; deleting a user cascades to its tokens.
    await hosts.delete(host.id);
    expect(await vms.countBy({ hostId: host.id })).toBe(0);
    expect(await disks.countBy({ vmId: vm.id })).toBe(0);
    await users.delete(user.id);
    expect(await tokens.count()).toBe(0);
    // Rows without relations stay (jobs and points outlive their VM rows by design).
    expect(await points.countBy({ id: point.id })).toBe(1);
  });

  it('stamps creation times to the millisecond, so rows made within one second keep their order', async () => {
    const jobs = ds.getRepository(JobEntity);
    const made: string[] = [];
    const before = Date.now();
    for (let i = 0; i < 5; i++) {
      made.push((await jobs.save({ type: 'backup', state: 'queued' })).id);
      await new Promise((r) => setTimeout(r, 3));
    }
    const inserted = (await jobs.insert({ type: 'backup', state: 'queued' })).identifiers[0].id as string;
    made.push(inserted);
    const rows = await jobs.find({ where: { id: In(made) }, order: { createdAt: 'ASC' } });
    expect(rows.map((r) => r.id)).toEqual(made);
    const times = rows.map((r) => r.createdAt.getTime());
    expect(new Set(times).size).toBe(made.length);
    expect(times[0]).toBeGreaterThanOrEqual(before);
    // A time the caller gives (an imported point's manifest time) is kept.
    const given = new Date('2025-01-02T03:04:05.678Z');
    const kept = await jobs.save({ type: 'backup', state: 'queued', createdAt: given });
    expect((await jobs.findOneByOrFail({ id: kept.id })).createdAt.toISOString()).toBe(given.toISOString());
    await jobs.delete({ id: In([...made, kept.id]) });
  });

  it('enforces foreign keys and unique indexes', async () => {
    const vms = ds.getRepository(VmEntity);
    await expect(vms.insert({ hostId: '00000000-0000-4000-8000-000000000000', moref: 'vm-1', name: 'orphan' })).rejects.toThrow(
      /foreign key/i,
    );
    const users = ds.getRepository(UserEntity);
    await users.insert({ username: 'bob', passwordHash: 'x', role: 'viewer' });
    await expect(users.insert({ username: 'bob', passwordHash: 'y', role: 'admin' })).rejects.toThrow(/unique|duplicate/i);
  });

  it('stores a host password sealed: not plaintext in the database, opens only with the right key', async () => {
    const plaintext = `s3cret-${randomBytes(6).toString('hex')}`;
    const box = new SecretBox(loadOrCreateSecretKey(config));
    const hosts = ds.getRepository(HostEntity);
    const host = await hosts.save(
      hosts.create({ name: 'sealed', url: 'https://h', username: 'root', passwordSealed: box.seal(plaintext) }),
    );
    const raw: Array<{ passwordSealed: string }> = await ds.query(
      `SELECT ${ds.driver.escape('passwordSealed')} FROM ${ds.driver.escape('hosts')} WHERE ${ds.driver.escape('id')} = ?`,
      [host.id],
    );
    expect(raw).toHaveLength(1);
    expect(raw[0].passwordSealed).toMatch(/^v1:/);
    expect(raw[0].passwordSealed).not.toContain(plaintext);
    expect(Buffer.from(raw[0].passwordSealed.slice(3), 'base64').includes(Buffer.from(plaintext))).toBe(false);

    // The key came from (and was persisted to) the data dir: a second load gives the same key.
    const reopened = new SecretBox(loadOrCreateSecretKey(config));
    expect(reopened.open(raw[0].passwordSealed)).toBe(plaintext);
    const otherKey = new SecretBox(randomBytes(32));
    expect(() => otherKey.open(raw[0].passwordSealed)).toThrow(SecretError);
    expect(() => otherKey.open(raw[0].passwordSealed)).not.toThrow(new RegExp(plaintext));
  });

  it('reverts cleanly with the down migrations and migrates up again', async () => {
    for (let i = 0; i < MIGRATIONS.length; i++) await ds.undoLastMigration();
    expect(await existingTables(ds)).toEqual([]);
    expect(await ds.query('SELECT name FROM migrations')).toEqual([]);
    expect(await ds.showMigrations()).toBe(true);

    await ds.runMigrations();
    expect(await existingTables(ds)).toEqual(TABLES);
    expect(await pendingSchemaQueries(ds)).toEqual([]);
  });
});

