// Webhook notifier and delivery worker against real peers (SQLite, a private redis-server, an HTTP receiver):
// events go only to enabled, subscribed webhooks; an event raised twice is delivered once; a receiver that keeps
// failing exhausts the attempts and leaves the delivery `failed` with the last status.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import type { DataSource } from 'typeorm';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { WEBHOOK_QUEUE } from '@vmkeep/contracts';
import { JobEntity, openDataSource, SecretBox, WebhookDeliveryEntity, WebhookEntity, PolicyEntity, VmEntity } from '@vmkeep/persistence';
import { parseRedisUrl } from '@vmkeep/queue';
import { WebhookNotifier, WebhookWorker } from '../apps/worker/src/webhooks/webhooks.module';
import type { Peer } from './peers/process';
import { startRedis } from './peers/redis';

let dir: string;
let redis: Peer;
let db: DataSource;
let config: AppConfig;
let notifier: WebhookNotifier;
let worker: WebhookWorker;
let server: http.Server;
let url: string;
const hits: string[] = [];
const box = new SecretBox(Buffer.alloc(32, 7));

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-webhooks-'));
  redis = await startRedis();
  config = loadConfig({ VMKEEP_DATA_DIR: dir, VMKEEP_WEBHOOK_ATTEMPTS: '2', VMKEEP_WEBHOOK_BACKOFF_MS: '50', VMKEEP_WEBHOOK_TIMEOUT_MS: '2000' }, dir);
  db = await openDataSource(config);
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits.push(`${req.url} ${String(req.headers['x-vmkeep-event'])}`);
      res.statusCode = req.url === '/down' ? 503 : 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const connection = parseRedisUrl(redis.url);
  const repo = <T extends object>(e: new () => T) => db.getRepository(e);
  notifier = new WebhookNotifier(config, connection, repo(WebhookEntity), repo(WebhookDeliveryEntity), repo(JobEntity), repo(VmEntity), repo(PolicyEntity));
  worker = new WebhookWorker(config, connection, repo(WebhookEntity), repo(WebhookDeliveryEntity), box);
  await worker.onApplicationBootstrap();
});

afterAll(async () => {
  await worker?.onModuleDestroy();
  await notifier?.onModuleDestroy();
  await db?.destroy();
  await redis?.stop();
  await new Promise((r) => server?.close(r));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function hook(name: string, route: string, events: WebhookEntity['events'], enabled = true): Promise<WebhookEntity> {
  return db.getRepository(WebhookEntity).save({ name, url: `${url}${route}`, events, enabled, secretSealed: box.seal(`${name}-secret-0123456789`) });
}

async function job(state: JobEntity['state']): Promise<JobEntity> {
  return db.getRepository(JobEntity).save({ type: 'backup', state, startedAt: new Date(Date.now() - 1000), finishedAt: new Date() });
}

async function deliveries(webhookId: string, until: (d: WebhookDeliveryEntity[]) => boolean): Promise<WebhookDeliveryEntity[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const rows = await db.getRepository(WebhookDeliveryEntity).find({ where: { webhookId }, order: { createdAt: 'ASC' } });
    if (until(rows)) return rows;
    if (Date.now() > deadline) throw new Error(`deliveries did not settle: ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('webhook notifier and delivery worker', () => {
  it('sends to enabled subscribed webhooks only, once per event even when raised twice; cancelled jobs raise nothing', async () => {
    const ok = await hook('ok', '/ok', ['backup.succeeded', 'backup.failed']);
    const off = await hook('off', '/off', ['backup.succeeded'], false);
    const other = await hook('other', '/other', ['restore.failed']);
    const done = await job('succeeded');
    await Promise.all([notifier.jobFinished(done.id), notifier.jobFinished(done.id)]);
    await notifier.jobFinished(done.id);
    await notifier.jobFinished((await job('cancelled')).id);
    const rows = await deliveries(ok.id, (d) => d.length === 1 && d[0].state === 'delivered');
    expect(rows[0]).toMatchObject({ event: 'backup.succeeded', subject: done.id, attempts: 1, lastStatus: 200, lastError: null });
    expect(JSON.parse(rows[0].payload)).toMatchObject({ event: 'backup.succeeded', job: { id: done.id, state: 'succeeded', durationSeconds: 1 } });
    await new Promise((r) => setTimeout(r, 300));
    expect(hits).toEqual(['/ok backup.succeeded']);
    expect(await db.getRepository(WebhookDeliveryEntity).countBy({ webhookId: off.id })).toBe(0);
    expect(await db.getRepository(WebhookDeliveryEntity).countBy({ webhookId: other.id })).toBe(0);
  });

  it('gives up after the configured attempts and records the last status', async () => {
    const down = await hook('down', '/down', ['backup.failed']);
    const failed = await job('failed');
    await notifier.jobFinished(failed.id);
    const [row] = await deliveries(down.id, (d) => d.length === 1 && d[0].state === 'failed');
    expect(row).toMatchObject({ attempts: 2, lastStatus: 503, lastError: 'the receiver answered HTTP 503', deliveredAt: null });
    expect(hits.filter((h) => h.startsWith('/down'))).toEqual(['/down backup.failed', '/down backup.failed']);
    const queue = new Queue(WEBHOOK_QUEUE, { connection: parseRedisUrl(redis.url) });
    expect(await queue.getJobCounts('failed')).toEqual({ failed: 1 });
    await queue.close();
  });
});
