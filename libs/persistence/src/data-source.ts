import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataSource, DataSourceOptions } from 'typeorm';
import { AppConfig, ConfigError } from '@vmkeep/config';
import { CreatedAtSubscriber } from './created-at';
import { ENTITIES } from './entities';
import { MIGRATIONS } from './migrations';

/** How long SQLite waits for a lock held by another process (API and worker share the file). */
const SQLITE_BUSY_TIMEOUT_MS = 10000;

/**
 * TypeORM options for the configured database. The schema comes only from migrations: `synchronize` is off
 * and pending migrations run when the data source initialises.
 */
export function dataSourceOptions(config: AppConfig): DataSourceOptions {
  const common = {
    entities: ENTITIES,
    migrations: MIGRATIONS,
    subscribers: [CreatedAtSubscriber],
    migrationsRun: true,
    synchronize: false,
    // Failed queries are thrown to the caller; logging them here would also print their parameters.
    logging: ['warn'] as 'warn'[],
  };
  const db = config.database;
  if (db.type === 'sqlite') {
    if (!db.sqlitePath) throw new ConfigError(['SQLite database path is missing']);
    if (db.sqlitePath !== ':memory:') fs.mkdirSync(path.dirname(db.sqlitePath), { recursive: true });
    return {
      ...common,
      type: 'better-sqlite3',
      database: db.sqlitePath,
      enableWAL: db.sqlitePath !== ':memory:',
      timeout: SQLITE_BUSY_TIMEOUT_MS,
      // The driver turns foreign keys on by itself; stating it keeps the guarantee independent of that default.
      prepareDatabase: (handle: { pragma(source: string): unknown }) => {
        handle.pragma('foreign_keys = ON');
      },
    };
  }
  return { ...common, type: 'mysql', ...mysqlConnection(db.url) };
}

/** Splits a mysql:// URL into connection fields; every value stays out of error messages except its shape. */
function mysqlConnection(url: string | undefined) {
  let parsed: URL;
  try {
    parsed = new URL(url ?? '');
  } catch {
    throw new ConfigError(['DATABASE_URL is not a valid mysql:// URL']);
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  if (!parsed.hostname) throw new ConfigError(['DATABASE_URL must name a host (mysql://user:password@host:port/db)']);
  if (!database || database.includes('/')) {
    throw new ConfigError(['DATABASE_URL must name one database (mysql://user:password@host:port/db)']);
  }
  return {
    host: parsed.hostname,
    port: parsed.port ? Number(parsed.port) : 3306,
    username: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database,
    charset: 'utf8mb4_unicode_ci',
    // Store and read DATETIME values as UTC, whatever the server's or the process's time zone.
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: true,
    connectTimeout: 10000,
  };
}

/** Opens the configured database and applies pending migrations (for scripts and tests). */
export async function openDataSource(config: AppConfig): Promise<DataSource> {
  const dataSource = new DataSource(dataSourceOptions(config));
  await dataSource.initialize();
  return dataSource;
}
