import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { BACKUP_JOB } from '@vmkeep/contracts';
import { BackupQueue, QueueUnavailableError } from './backup-queue';
import {
  embeddedRedisFiles,
  ensureEmbeddedRedis,
  parseRedisUrl,
  pingSocket,
  redisConnection,
  RedisSetupError,
  stopEmbeddedRedis,
} from './redis-connection';

describe('parseRedisUrl', () => {
  it('reads host, port, credentials and database', () => {
    expect(parseRedisUrl('redis://bob:s%40cret@10.0.0.5:6380/3')).toEqual({
      host: '10.0.0.5',
      port: 6380,
      db: 3,
      username: 'bob',
      password: 's@cret',
      maxRetriesPerRequest: null,
    });
  });

  it('defaults the port, enables TLS for rediss and reads unix sockets', () => {
    expect(parseRedisUrl('rediss://cache.local')).toMatchObject({ host: 'cache.local', port: 6379, db: 0, tls: {} });
    expect(parseRedisUrl('unix:///run/redis/redis.sock?db=2')).toMatchObject({ path: '/run/redis/redis.sock', db: 2 });
  });

  it('rejects other schemes and bad databases with a typed error', () => {
    expect(() => parseRedisUrl('http://x')).toThrow(RedisSetupError);
    expect(() => parseRedisUrl('redis://x/abc')).toThrow(/database "abc"/);
    expect(() => parseRedisUrl('not a url')).toThrow(RedisSetupError);
  });
});

describe('embedded redis-server', () => {
  let dataDir: string;
  let config: { dataDir: string; redisSocket: string; redisServerBin: string; redisUrl?: string };

  beforeAll(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-redis-'));
    config = { dataDir, redisSocket: path.join(dataDir, 'redis.sock'), redisServerBin: 'redis-server' };
  });

  afterAll(async () => {
    await stopEmbeddedRedis(config);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts one server for racing callers, on a private unix socket only', async () => {
    const [a, b, c] = await Promise.all([redisConnection(config), redisConnection(config), ensureEmbeddedRedis(config)]);
    expect(a).toEqual({ path: config.redisSocket, maxRetriesPerRequest: null });
    expect(b).toEqual(a);
    expect(c).toBeUndefined();
    expect(await pingSocket(config.redisSocket)).toBe(true);
    expect(fs.statSync(config.redisSocket).mode & 0o777).toBe(0o700);
    const files = embeddedRedisFiles(config);
    const conf = fs.readFileSync(files.conf, 'utf8');
    expect(conf).toMatch(/^port 0$/m);
    expect(fs.existsSync(files.lockFile)).toBe(false);
    const pid = Number(fs.readFileSync(files.pidFile, 'utf8'));
    // A later call reuses the live server.
    await ensureEmbeddedRedis(config);
    expect(Number(fs.readFileSync(files.pidFile, 'utf8'))).toBe(pid);
  });

  it('gives BullMQ a working connection; enqueuing a job twice adds it once', async () => {
    const queue = new Queue('vmkeep-test-queue', { connection: await redisConnection(config) });
    try {
      const producer = new BackupQueue(queue);
      await producer.enqueue('job-1');
      await producer.enqueue('job-1');
      expect(await producer.waitingCount()).toBe(1);
      const job = await queue.getJob('job-1');
      expect(job?.name).toBe(BACKUP_JOB);
      expect(job?.data).toEqual({ jobId: 'job-1' });
      expect(job?.opts.attempts).toBe(1);
      expect(await producer.remove('job-1')).toBe(true);
      expect(await queue.getJob('job-1')).toBeUndefined();
      expect(await producer.waitingCount()).toBe(0);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it('refuses to remove a job a worker is running', async () => {
    const connection = await redisConnection(config);
    const queue = new Queue('vmkeep-test-locked', { connection });
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let markStarted: () => void = () => undefined;
    const started = new Promise<void>((r) => (markStarted = r));
    const worker = new Worker('vmkeep-test-locked', async () => {
      markStarted();
      await held;
    }, { connection });
    try {
      const producer = new BackupQueue(queue);
      await producer.enqueue('job-2');
      await started;
      expect(await producer.remove('job-2')).toBe(false);
      expect(await queue.getJob('job-2')).toBeDefined();
    } finally {
      release();
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it('stops the server; queue operations then fail in bounded time; a missing binary is reported clearly', async () => {
    const queue = new Queue('vmkeep-test-down', { connection: await redisConnection(config) });
    queue.on('error', () => undefined);
    await queue.waitUntilReady();
    expect(await stopEmbeddedRedis(config)).toBe(true);
    expect(await pingSocket(config.redisSocket)).toBe(false);
    const producer = new BackupQueue(queue, 300);
    const started = Date.now();
    await expect(producer.enqueue('job-3')).rejects.toThrow(QueueUnavailableError);
    await expect(producer.enqueue('job-3')).rejects.toThrow(/did not answer within 0.3 s while trying to enqueue a job/);
    expect(Date.now() - started).toBeLessThan(5000);
    // A restarted server is picked up again by the same queue (ioredis reconnects with backoff).
    await ensureEmbeddedRedis(config);
    let count: number | undefined;
    for (let i = 0; i < 40 && count === undefined; i++) count = await producer.waitingCount().catch(() => undefined);
    // The timed-out add was replayed on reconnect: why consumers must check the job's state in the database.
    expect(count).toBe(1);
    expect((await queue.getJob('job-3'))?.data).toEqual({ jobId: 'job-3' });
    await queue.obliterate({ force: true });
    await queue.close();
    expect(await stopEmbeddedRedis(config)).toBe(true);
    const broken = { ...config, redisServerBin: path.join(dataDir, 'no-such-redis-server') };
    await expect(ensureEmbeddedRedis(broken)).rejects.toThrow(/could not start .*no-such-redis-server/);
  });
});
