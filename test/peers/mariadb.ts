// Test peer: a throw-away MariaDB server run as a plain process. The data dir is initialised with
// mariadb-install-db in a temp dir; the server listens on 127.0.0.1 and a free port, its socket lives in the same
// temp dir, and the test user and database are created during bootstrap (no root login needed afterwards).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createConnection } from 'mysql2/promise';
import { freePort, makeTempDir, requireBinary, startServerPeer, type Peer } from './process';

const run = promisify(execFile);

export const TEST_DATABASE = 'vmkeep_test';
const TEST_USER = 'vmkeep';

/** Keeps the server small: these tests need a few MB of buffer pool, not the default 128 MB. */
const SERVER_TUNING = [
  '--innodb-buffer-pool-size=16M',
  '--innodb-log-file-size=8M',
  '--skip-log-bin',
  '--skip-name-resolve',
  '--performance-schema=OFF',
  '--character-set-server=utf8mb4',
  '--collation-server=utf8mb4_unicode_ci',
];

/** Starts mariadbd; url is mysql://vmkeep:PASSWORD@127.0.0.1:PORT/vmkeep_test. Takes about a second. */
export async function startMariadb(): Promise<Peer> {
  const installDb = requireBinary('mariadb-install-db', 'mysql_install_db');
  const server = requireBinary('mariadbd', 'mysqld');
  const dir = makeTempDir('vmkeep-mariadb-');
  const dataDir = path.join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0 ? ['--user=root'] : [];

  // Bootstrap runs with grant tables off; FLUSH PRIVILEGES loads them so CREATE USER works.
  const bootstrapSql = path.join(dir, 'bootstrap.sql');
  fs.writeFileSync(
    bootstrapSql,
    [
      'FLUSH PRIVILEGES;',
      `CREATE DATABASE \`${TEST_DATABASE}\`;`,
      `CREATE USER '${TEST_USER}'@'%' IDENTIFIED BY '${password}';`,
      `GRANT ALL PRIVILEGES ON *.* TO '${TEST_USER}'@'%';`,
      '',
    ].join('\n'),
  );
  try {
    await run(
      installDb,
      [
        '--no-defaults',
        `--datadir=${dataDir}`,
        ...asRoot,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        `--extra-file=${bootstrapSql}`,
        ...SERVER_TUNING,
      ],
      { cwd: dir, timeout: 60000 },
    );
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`mariadb-install-db failed: ${e.message}\n${(e.stdout ?? '') + (e.stderr ?? '')}`.trim(), {
      cause: err,
    });
  }

  const port = await freePort();
  const url = `mysql://${TEST_USER}:${password}@127.0.0.1:${port}/${TEST_DATABASE}`;
  return startServerPeer({
    what: 'mariadbd',
    bin: server,
    args: [
      '--no-defaults',
      `--datadir=${dataDir}`,
      ...asRoot,
      '--bind-address=127.0.0.1',
      `--port=${port}`,
      `--socket=${path.join(dir, 'mysqld.sock')}`,
      `--pid-file=${path.join(dir, 'mysqld.pid')}`,
      `--tmpdir=${dir}`,
      ...SERVER_TUNING,
    ],
    dir,
    url,
    ready: async () => {
      const conn = await createConnection({ uri: url, connectTimeout: 1000 });
      await conn.end();
      return true;
    },
    readyTimeoutMs: 30_000,
    stopGraceMs: 15_000,
  });
}

const DATABASE_NAME = /^[A-Za-z0-9_]{1,64}$/;

/**
 * Creates database `name` on the server of `url` (dropping a previous one of that name) and returns a URL that
 * points at it, so parallel suites each get a fresh database.
 */
export async function createDatabase(url: string, name: string): Promise<string> {
  if (!DATABASE_NAME.test(name)) throw new Error(`invalid database name "${name}" (letters, digits, _ only)`);
  const conn = await createConnection({ uri: url });
  try {
    await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
    await conn.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  } finally {
    await conn.end();
  }
  const target = new URL(url);
  target.pathname = `/${name}`;
  return target.toString();
}

/** Drops database `name` on the server of `url` (for suites that clean up after themselves). */
export async function dropDatabase(url: string, name: string): Promise<void> {
  if (!DATABASE_NAME.test(name)) throw new Error(`invalid database name "${name}" (letters, digits, _ only)`);
  const conn = await createConnection({ uri: url });
  try {
    await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
  } finally {
    await conn.end();
  }
}
