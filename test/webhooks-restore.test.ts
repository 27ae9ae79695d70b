// Webhooks for restore jobs on the real appliance (compiled API + worker, SQLite, its own Redis) with a vcsim VM:
// a full VM restore that succeeds and one that fails (unknown datastore, found by the worker) each deliver exactly
// one signed event to every webhook subscribed to it — `restore.*` gets both, `restore.failed` only the failure —
// with the job's id, type, state, restore point and error; the backup before them raises no restore event.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addVcsimHost, startAppliance, vmIdByName, waitForJob, type Appliance, type JobRow } from './peers/appliance';
import { buildRandomZeroImage } from './peers/disk-images';
import type { Peer } from './peers/process';
import { startRedis } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';
import { startWebhookReceiver, until, validSignature, type ReceivedWebhook, type WebhookReceiver } from './peers/webhook-receiver';

const VM_NAME = 'wh-restore-src';
const SECRET = 'restore-receiver-secret-0123456789';
const FAILURES_SECRET = 'failures-receiver-secret-0123456789';

interface EventBody {
  event: string;
  occurredAt: string;
  job: { id: string; type: string; state: string; vmId: string; vmName: string; restorePointId: string; error: string | null; phase: string };
}

let work: string;
let vcsim: VcsimInstance;
let redis: Peer;
let receiver: WebhookReceiver;
let app: Appliance;
let vmId: string;
const hooks: Record<'restores' | 'failures', string> = { restores: '', failures: '' };

const bodyOf = (r: ReceivedWebhook) => JSON.parse(r.body) as EventBody;
const requestsFor = (hookPath: string, jobId: string) => receiver.received.filter((r) => r.path === hookPath && bodyOf(r).job?.id === jobId);

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-webhooks-restore-'));
  const image = await buildRandomZeroImage({ dir: work, sizeMiB: 4, seed: 'wh-restore' });
  [vcsim, redis, receiver] = await Promise.all([
    startVcsim({ seed: [{ name: VM_NAME, disks: [{ image: image.path }] }] }),
    startRedis(),
    startWebhookReceiver(),
  ]);
  app = await startAppliance({
    redisUrl: redis.url,
    redisDb: 0,
    env: { VMKEEP_WEBHOOK_BACKOFF_MS: '100', VMKEEP_WEBHOOK_ATTEMPTS: '3', VMKEEP_WEBHOOK_TIMEOUT_MS: '3000' },
  });
  await addVcsimHost(app, vcsim);
  vmId = await vmIdByName(app, VM_NAME);
  const add = async (name: string, events: string[], secret: string) =>
    (await app.api<{ id: string }>('POST', '/api/webhooks', { name, url: `${receiver.url}/${name}`, events, secret })).id;
  hooks.restores = await add('restores', ['restore.*'], SECRET);
  hooks.failures = await add('failures', ['restore.failed'], FAILURES_SECRET);
}, 300_000);

afterAll(async () => {
  await app?.stop();
  await Promise.allSettled([vcsim?.stop(), redis?.stop(), receiver?.close()]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

it('delivers one signed restore.succeeded and one restore.failed event for VM restores', async () => {
  const backup = await waitForJob(app, (await app.api<{ id: string }>('POST', `/api/vms/${vmId}/backup`, {})).id);
  expect(backup.state).toBe('succeeded');
  const pointId = backup.restorePointId!;
  const restore = async (body: Record<string, unknown>): Promise<JobRow> =>
    waitForJob(app, (await app.api<{ id: string }>('POST', `/api/restore-points/${pointId}/restore-vm`, body)).id);

  const ok = await restore({ name: 'wh-restored', thin: true });
  expect(ok.state).toBe('succeeded');
  const bad = await restore({ name: 'wh-never', datastore: 'no-such-datastore' });
  expect(bad).toMatchObject({ state: 'failed', error: expect.stringMatching(/no-such-datastore/) });

  const okRequest = await until('the restore.succeeded request', async () => requestsFor('/restores', ok.id)[0]);
  const badRequest = await until('the restore.failed request', async () => requestsFor('/restores', bad.id)[0]);
  const failuresRequest = await until('the restore.failed request of the failures hook', async () => requestsFor('/failures', bad.id)[0]);

  expect(okRequest.headers['x-vmkeep-event']).toBe('restore.succeeded');
  expect(validSignature(okRequest, SECRET)).toBe(true);
  expect(bodyOf(okRequest)).toMatchObject({
    event: 'restore.succeeded',
    job: { id: ok.id, type: 'restore-vm', state: 'succeeded', vmId, vmName: VM_NAME, restorePointId: pointId, error: null },
  });
  expect(bodyOf(okRequest).job.phase).toMatch(/wh-restored/);

  for (const [request, secret] of [[badRequest, SECRET], [failuresRequest, FAILURES_SECRET]] as const) {
    expect(request.headers['x-vmkeep-event']).toBe('restore.failed');
    expect(validSignature(request, secret)).toBe(true);
    expect(bodyOf(request)).toMatchObject({
      event: 'restore.failed',
      job: { id: bad.id, type: 'restore-vm', state: 'failed', vmId, vmName: VM_NAME, restorePointId: pointId, error: bad.error },
    });
  }
  expect(validSignature(failuresRequest, SECRET)).toBe(false);

  // Exactly one request per job and webhook (each answered 204 at once), and nothing for the backup.
  await new Promise((r) => setTimeout(r, 1500));
  expect(requestsFor('/restores', ok.id)).toHaveLength(1);
  expect(requestsFor('/restores', bad.id)).toHaveLength(1);
  expect(requestsFor('/failures', bad.id)).toHaveLength(1);
  expect(requestsFor('/failures', ok.id)).toHaveLength(0);
  expect(receiver.received.filter((r) => bodyOf(r).job?.id === backup.id)).toEqual([]);
  expect(receiver.received).toHaveLength(3);

  const deliveries = async (id: string) =>
    (await app.api<{ items: { event: string; subject: string; state: string; attempts: number; lastStatus: number }[] }>('GET', `/api/webhooks/${id}/deliveries`)).items;
  const restores = await deliveries(hooks.restores);
  expect(restores.map((d) => [d.event, d.state, d.attempts, d.lastStatus]).sort()).toEqual([
    ['restore.failed', 'delivered', 1, 204],
    ['restore.succeeded', 'delivered', 1, 204],
  ]);
  expect((await deliveries(hooks.failures)).map((d) => [d.event, d.state])).toEqual([['restore.failed', 'delivered']]);
  expect(app.logs()).not.toContain(SECRET);
});
