// ConfigModule + PersistenceModule booted by Nest on a temp SQLite database, as the apps use them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Test, TestingModule } from '@nestjs/testing';
import { getRepositoryToken } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import { APP_CONFIG, AppConfig, ConfigModule } from '@vmkeep/config';
import { HostEntity, PersistenceModule, SecretBox } from '@vmkeep/persistence';

describe('PersistenceModule', () => {
  const saved = { ...process.env };
  let dataDir: string;
  let moduleRef: TestingModule;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-module-'));
    process.env.VMKEEP_DATA_DIR = dataDir;
    delete process.env.DATABASE_URL;
    delete process.env.VMKEEP_SECRET_KEY;
    moduleRef = await Test.createTestingModule({ imports: [ConfigModule, PersistenceModule] }).compile();
  });

  afterAll(async () => {
    await moduleRef?.close();
    process.env = saved;
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('provides the config read from the environment', () => {
    const config = moduleRef.get<AppConfig>(APP_CONFIG);
    expect(config.dataDir).toBe(dataDir);
    expect(config.database).toEqual({ type: 'sqlite', sqlitePath: path.join(dataDir, 'vmkeep.sqlite') });
  });

  it('opens the embedded SQLite database with migrations applied, WAL and foreign keys on', async () => {
    const ds = moduleRef.get(DataSource);
    expect(ds.isInitialized).toBe(true);
    expect(await ds.showMigrations()).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'vmkeep.sqlite'))).toBe(true);
    expect(await ds.query('PRAGMA journal_mode')).toEqual([{ journal_mode: 'wal' }]);
    expect(await ds.query('PRAGMA foreign_keys')).toEqual([{ foreign_keys: 1 }]);
  });

  it('injects repositories and a SecretBox keyed from the data dir', async () => {
    const hosts = moduleRef.get<Repository<HostEntity>>(getRepositoryToken(HostEntity));
    const box = moduleRef.get(SecretBox);
    const saved = await hosts.save(hosts.create({ name: 'h', url: 'https://h', username: 'u', passwordSealed: box.seal('pw') }));
    expect(box.open((await hosts.findOneByOrFail({ id: saved.id })).passwordSealed)).toBe('pw');
    const keyFile = path.join(dataDir, 'secret.key');
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(new SecretBox(fs.readFileSync(keyFile)).open(saved.passwordSealed)).toBe('pw');
  });
});
