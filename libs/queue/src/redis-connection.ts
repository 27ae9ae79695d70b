import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { RedisOptions } from 'bullmq';
import type { AppConfig } from '@vmkeep/config';

/**
 * Where the appliance's Redis lives. With REDIS_URL set, that server is used as is; otherwise an embedded
 * redis-server is started (once, shared by every VMKeep process on the machine) on a unix socket in the data
 * folder: no TCP port, socket readable by our user only.
 */

export class RedisSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisSetupError';
  }
}

/** ioredis options as BullMQ takes them (`path` for a unix socket, `host`/`port` otherwise). */
export type RedisConnectionOptions = RedisOptions;

type RedisConfig = Pick<AppConfig, 'redisUrl' | 'redisSocket' | 'redisServerBin' | 'dataDir'>;

const START_TIMEOUT_MS = 15_000;
/** A start lock older than this belongs to a process that died while starting Redis. */
const STALE_LOCK_MS = 30_000;

/** ioredis options for the configured Redis, starting the embedded server first when needed. */
export async function redisConnection(config: RedisConfig): Promise<RedisOptions> {
  if (config.redisUrl !== undefined) return parseRedisUrl(config.redisUrl);
  await ensureEmbeddedRedis(config);
  return { path: config.redisSocket, maxRetriesPerRequest: null };
}

/** Turns redis://, rediss:// or unix: URLs into ioredis options (BullMQ needs maxRetriesPerRequest: null). */
export function parseRedisUrl(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RedisSetupError('REDIS_URL is not a valid URL');
  }
  const db = u.searchParams.get('db') ?? (u.pathname.length > 1 && u.protocol !== 'unix:' ? u.pathname.slice(1) : '0');
  const dbNumber = Number(db);
  if (!Number.isInteger(dbNumber) || dbNumber < 0) throw new RedisSetupError(`REDIS_URL database "${db}" is not a number`);
  const auth = {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
  if (u.protocol === 'unix:') {
    if (!u.pathname) throw new RedisSetupError('REDIS_URL unix: needs a socket path');
    return { path: decodeURIComponent(u.pathname), db: dbNumber, ...auth, maxRetriesPerRequest: null };
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new RedisSetupError('REDIS_URL must start with redis://, rediss:// or unix:');
  }
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db: dbNumber,
    ...auth,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** True when a Redis server answers PING on the unix socket. */
export function pingSocket(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.createConnection({ path: socketPath });
    let answer = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      answer += d.toString('latin1');
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

/** Files of the embedded server, all inside the data folder. */
export function embeddedRedisFiles(config: Pick<AppConfig, 'dataDir'>): {
  dir: string;
  conf: string;
  pidFile: string;
  logFile: string;
  lockFile: string;
} {
  const dir = path.join(config.dataDir, 'redis');
  return {
    dir,
    conf: path.join(dir, 'redis.conf'),
    pidFile: path.join(dir, 'redis.pid'),
    logFile: path.join(dir, 'redis.log'),
    lockFile: path.join(dir, 'start.lock'),
  };
}

/**
 * Makes sure the embedded redis-server answers on config.redisSocket. Several processes may call this at once:
 * an exclusive lock file decides which one starts the server; the others wait for the socket to answer.
 */
export async function ensureEmbeddedRedis(config: Omit<RedisConfig, 'redisUrl'>): Promise<void> {
  if (await pingSocket(config.redisSocket)) return;
  const files = embeddedRedisFiles(config);
  fs.mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (takeLock(files.lockFile)) {
      try {
        if (await pingSocket(config.redisSocket)) return;
        await startServer(config, files, deadline);
        return;
      } finally {
        fs.rmSync(files.lockFile, { force: true });
      }
    }
    // Another process is starting it.
    await sleep(100);
    if (await pingSocket(config.redisSocket)) return;
  }
  throw new RedisSetupError(`embedded Redis did not answer on ${config.redisSocket} within ${START_TIMEOUT_MS / 1000} s`);
}

/** Stops the embedded server started by ensureEmbeddedRedis (if its pid file names a live process). */
export async function stopEmbeddedRedis(config: Pick<AppConfig, 'dataDir' | 'redisSocket'>): Promise<boolean> {
  const { pidFile } = embeddedRedisFiles(config);
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  return true;
}

function takeLock(lockFile: string): boolean {
  try {
    fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  try {
    const holder = Number(fs.readFileSync(lockFile, 'utf8').trim());
    const age = Date.now() - fs.statSync(lockFile).mtimeMs;
    if (age > STALE_LOCK_MS || !(holder > 0 && isAlive(holder))) fs.rmSync(lockFile, { force: true });
  } catch {
    // The holder removed it meanwhile: retry on the next round.
  }
  return false;
}

function configText(config: Omit<RedisConfig, 'redisUrl'>, files: ReturnType<typeof embeddedRedisFiles>): string {
  const q = (s: string): string => JSON.stringify(s);
  return [
    '# Written by VMKeep: embedded Redis for the job queue (unix socket only).',
    'port 0',
    `unixsocket ${q(config.redisSocket)}`,
    'unixsocketperm 700',
    `pidfile ${q(files.pidFile)}`,
    `logfile ${q(files.logFile)}`,
    `dir ${q(files.dir)}`,
    'daemonize no',
    'appendonly yes',
    'appendfsync everysec',
    '',
  ].join('\n');
}

async function startServer(
  config: Omit<RedisConfig, 'redisUrl'>,
  files: ReturnType<typeof embeddedRedisFiles>,
  deadline: number,
): Promise<void> {
  fs.mkdirSync(path.dirname(config.redisSocket), { recursive: true });
  fs.writeFileSync(files.conf, configText(config, files), { mode: 0o600 });
  const child = spawn(config.redisServerBin, [files.conf], { detached: true, stdio: 'ignore' });
  let exit: string | undefined;
  child.on('error', (err) => (exit = err.message));
  child.on('exit', (code, signal) => (exit = `exited with ${signal ?? `code ${code}`}`));
  child.unref();
  while (Date.now() < deadline) {
    if (exit !== undefined) {
      throw new RedisSetupError(`could not start ${config.redisServerBin}: ${exit}${logTail(files.logFile)}`);
    }
    if (await pingSocket(config.redisSocket, 500)) return;
    await sleep(50);
  }
  throw new RedisSetupError(`${config.redisServerBin} did not answer on ${config.redisSocket}${logTail(files.logFile)}`);
}

function logTail(logFile: string): string {
  try {
    const lines = fs.readFileSync(logFile, 'utf8').trim().split('\n');
    return ` (log: ${lines.slice(-3).join(' | ')})`;
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
