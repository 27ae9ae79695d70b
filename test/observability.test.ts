// Issue 5 observability on the real appliance (compiled API + worker, SQLite, its own Redis) backing up a vcsim
// VM with two disks: job history with per-disk figures (a full, then an incremental of the unchanged VM), signed
// webhooks delivered to a real HTTP receiver (a receiver answering 500 is retried), GET /metrics in Prometheus
// text format, and VMKEEP_LOG_FORMAT=json logs carrying the job id.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '@vmkeep/config';
import { openDataSource, RestorePointEntity } from '@vmkeep/persistence';
import { addVcsimHost, startAppliance, vmIdByName, vmkeep, waitForJob, type Appliance, type JobRow } from './peers/appliance';
import { buildExt4Image, buildRandomZeroImage } from './peers/disk-images';
import type { Peer } from './peers/process';
import { startRedis } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';
import { startWebhookReceiver, until, validSignature, type WebhookReceiver } from './peers/webhook-receiver';

const VM_NAME = 'obs-two-disks';
const METRICS_TOKEN = 'prometheus-scrape-token-0123';
const OK_SECRET = 'ok-receiver-secret-0123456789';
const FLAKY_SECRET = 'flaky-receiver-secret-0123456789';

interface DiskFigures {
  key: string;
  mode: 'full' | 'incremental';
  fullReason?: string;
  capacityBytes: number;
  bytesRead: number;
  changedBytes: number;
  newBytes: number;
  newChunks: number;
  dedupRatio: number;
  durationMs: number;
  speed: number;
}
type Job = JobRow & { disks: DiskFigures[] | null; bytesRead: number; bytesStored: number; vmId: string };

/** Prometheus text → { 'name{labels}': value }, plus the declared types. */
function parseMetrics(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const type = /^# TYPE (\w+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) types.set(type[1], type[2]);
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    samples.set(m[1], Number(m[2].replace('+Inf', 'Infinity')));
  }
  return { samples, types };
}

let work: string;
let vcsim: VcsimInstance;
let redis: Peer;
let receiver: WebhookReceiver;
let app: Appliance;
let vmId: string;
let metricsBefore: Map<string, number>;
const hooks: Record<'ok' | 'flaky', string> = { ok: '', flaky: '' };
const jobs: Job[] = [];

const scrape = (token?: string) => fetch(`${app.url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
const backup = async (): Promise<Job> => {
  const started = await app.api<{ id: string }>('POST', `/api/vms/${vmId}/backup`, {});
  const done = await waitForJob(app, started.id);
  return app.api<Job>('GET', `/api/jobs/${done.id}`);
};

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-observability-'));
  const [ext4, mixed] = await Promise.all([
    buildExt4Image({ dir: work, sizeMiB: 16, seed: 'obs' }),
    buildRandomZeroImage({ dir: work, sizeMiB: 8, seed: 'obs' }),
  ]);
  [vcsim, redis, receiver] = await Promise.all([
    startVcsim({ seed: [{ name: VM_NAME, disks: [{ image: ext4.path }, { image: mixed.path }] }] }),
    startRedis(),
    startWebhookReceiver(),
  ]);
  app = await startAppliance({
    redisUrl: redis.url,
    redisDb: 0,
    env: {
      VMKEEP_LOG_FORMAT: 'json',
      VMKEEP_METRICS_TOKEN: METRICS_TOKEN,
      VMKEEP_WEBHOOK_BACKOFF_MS: '100',
      VMKEEP_WEBHOOK_ATTEMPTS: '4',
      VMKEEP_WEBHOOK_TIMEOUT_MS: '3000',
    },
  });
  await addVcsimHost(app, vcsim);
  vmId = await vmIdByName(app, VM_NAME);
  hooks.ok = (await app.api<{ id: string }>('POST', '/api/webhooks', { name: 'ok', url: `${receiver.url}/ok`, events: ['backup.*'], secret: OK_SECRET })).id;
  hooks.flaky = (await app.api<{ id: string }>('POST', '/api/webhooks', { name: 'flaky', url: `${receiver.url}/flaky`, events: ['backup.succeeded'], secret: FLAKY_SECRET })).id;
  metricsBefore = parseMetrics(await (await scrape(METRICS_TOKEN)).text()).samples;
});

afterAll(async () => {
  await app?.stop();
  await Promise.allSettled([vcsim?.stop(), redis?.stop(), receiver?.close()]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('job history, webhooks, metrics and JSON logs', () => {
  it('records per-disk figures: a full backup, then an incremental of the unchanged VM (API and CLI)', async () => {
    jobs.push(await backup(), await backup());
    const [full, incr] = jobs;
    expect([full.state, incr.state]).toEqual(['succeeded', 'succeeded']);
    expect(full.disks).toHaveLength(2);
    expect(incr.disks).toHaveLength(2);
    for (const d of full.disks!) {
      expect(d).toMatchObject({ mode: 'full', fullReason: 'no earlier restore point of this VM' });
      expect(d.bytesRead).toBeGreaterThan(0);
      expect(d.bytesRead).toBeLessThanOrEqual(d.capacityBytes);
      expect(d.newBytes).toBeGreaterThan(0);
      expect(d.durationMs).toBeGreaterThanOrEqual(0);
    }
    for (const d of incr.disks!) {
      // Nothing changed: CBT reports no areas, nothing is read or stored, every chunk comes from the parent.
      expect(d).toMatchObject({ mode: 'incremental', bytesRead: 0, changedBytes: 0, newBytes: 0, newChunks: 0, dedupRatio: 1, speed: 0 });
      expect(d.fullReason).toBeUndefined();
    }
    expect(full.bytesRead).toBe(full.disks!.reduce((s, d) => s + d.bytesRead, 0));
    expect(full.bytesStored).toBe(full.disks!.reduce((s, d) => s + d.newBytes, 0));
    expect(incr.bytesRead).toBeLessThan(full.bytesRead);
    expect(incr.bytesStored).toBe(0);

    // The restore point row keeps the same figures per disk.
    const db = await openDataSource(loadConfig({ VMKEEP_DATA_DIR: app.dataDir }));
    try {
      const row = await db.getRepository(RestorePointEntity).findOneByOrFail({ id: incr.restorePointId! });
      expect(row.disks.map((d) => d.figures)).toEqual(incr.disks);
    } finally {
      await db.destroy();
    }

    const home = fs.mkdtempSync(path.join(work, 'home-'));
    const env = { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token };
    const shown = await vmkeep(['jobs', 'show', incr.id, '--json'], { home, env });
    expect({ code: shown.code, stderr: shown.stderr }).toEqual({ code: 0, stderr: '' });
    expect((JSON.parse(shown.stdout) as Job).disks).toEqual(incr.disks);
    const human = await vmkeep(['job', 'show', full.id], { home, env });
    expect(human.stdout).toMatch(/^disk-\d+\s+\S+\s+full\s+[\d.]+ MiB/m);
    const list = await vmkeep(['jobs', 'list', '--vm', VM_NAME, '--json'], { home, env });
    expect((JSON.parse(list.stdout) as Job[]).map((j) => j.id)).toEqual([incr.id, full.id]);
  });

  it('delivers signed backup events; a receiver answering 500 is retried until it accepts; secrets never come back', async () => {
    const deliveriesOf = (id: string) => app.api<{ items: { state: string; attempts: number; lastStatus: number | null; event: string }[] }>('GET', `/api/webhooks/${id}/deliveries`);
    const flaky = await until('two delivered flaky deliveries', async () => {
      const page = await deliveriesOf(hooks.flaky);
      return page.items.length === 2 && page.items.every((d) => d.state === 'delivered') ? page.items : undefined;
    });
    expect(flaky.map((d) => [d.event, d.attempts, d.lastStatus])).toEqual([
      ['backup.succeeded', 3, 204],
      ['backup.succeeded', 3, 204],
    ]);
    const ok = (await deliveriesOf(hooks.ok)).items;
    expect(ok.map((d) => [d.event, d.state, d.attempts])).toEqual([
      ['backup.succeeded', 'delivered', 1],
      ['backup.succeeded', 'delivered', 1],
    ]);

    const okRequests = receiver.received.filter((r) => r.path === '/ok');
    const flakyRequests = receiver.received.filter((r) => r.path === '/flaky');
    expect(okRequests).toHaveLength(2);
    expect(flakyRequests).toHaveLength(6);
    expect(okRequests.every((r) => validSignature(r, OK_SECRET))).toBe(true);
    expect(flakyRequests.every((r) => validSignature(r, FLAKY_SECRET))).toBe(true);
    expect(okRequests.some((r) => validSignature(r, FLAKY_SECRET))).toBe(false);
    const bodies = okRequests.map((r) => JSON.parse(r.body) as { event: string; job: Job & { vmName: string } });
    expect(bodies.map((b) => [b.event, b.job.id, b.job.vmName]).sort()).toEqual(
      jobs.map((j) => ['backup.succeeded', j.id, VM_NAME]).sort(),
    );
    expect(bodies.find((b) => b.job.id === jobs[0].id)!.job.disks).toEqual(jobs[0].disks);

    const listed = JSON.stringify(await app.api('GET', '/api/webhooks'));
    expect(listed).not.toContain(OK_SECRET);
    expect(listed).not.toContain('secretSealed');
    const bad = await app.fetch('POST', '/api/webhooks', { name: 'x', url: 'ftp://h/x', events: ['backup.exploded'], secret: 'sixteen-chars-ok' });
    expect(bad.status).toBe(400);
  });

  it('serves Prometheus metrics at /metrics to the metrics token and API tokens; counters moved', async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape('not-the-token')).status).toBe(401);
    expect((await scrape(app.token)).status).toBe(200);
    const res = await scrape(METRICS_TOKEN);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain;.*version=0\.0\.4/);
    const { samples, types } = parseMetrics(await res.text());
    expect(Object.fromEntries(types)).toMatchObject({
      vmkeep_jobs_total: 'counter',
      vmkeep_job_duration_seconds: 'histogram',
      vmkeep_backup_read_bytes_total: 'counter',
      vmkeep_backup_stored_bytes_total: 'counter',
      vmkeep_queue_jobs: 'gauge',
      vmkeep_restore_points: 'gauge',
      vmkeep_webhook_deliveries: 'gauge',
    });
    expect(metricsBefore.get('vmkeep_jobs_total{type="backup",state="succeeded"}')).toBeUndefined();
    expect(metricsBefore.get('vmkeep_backup_read_bytes_total')).toBe(0);
    expect(samples.get('vmkeep_jobs_total{type="backup",state="succeeded"}')).toBe(2);
    expect(samples.get('vmkeep_backup_read_bytes_total')).toBe(jobs[0].bytesRead + jobs[1].bytesRead);
    expect(samples.get('vmkeep_backup_stored_bytes_total')).toBe(jobs[0].bytesStored);
    expect(samples.get('vmkeep_job_duration_seconds_count{type="backup"}')).toBe(2);
    expect(samples.get('vmkeep_job_duration_seconds_bucket{type="backup",le="+Inf"}')).toBe(2);
    expect(samples.get('vmkeep_job_duration_seconds_sum{type="backup"}')).toBeGreaterThan(0);
    expect(samples.get('vmkeep_restore_points{kind="backup"}')).toBe(2);
    expect(samples.get('vmkeep_restore_points_stored_bytes{kind="backup"}')).toBe(jobs[0].bytesStored);
    expect(samples.get('vmkeep_webhook_deliveries{state="delivered"}')).toBe(4);
    expect(samples.get('vmkeep_queue_jobs{queue="vmkeep-backup",state="waiting"}')).toBe(0);
    expect(samples.has('vmkeep_queue_jobs{queue="vmkeep-webhooks",state="delayed"}')).toBe(true);
  });

  it('writes JSON log lines (time, level, context, msg) with the job id, and no secrets', () => {
    const [apiPart, workerPart] = app.logs().split('--- worker ---');
    const lines = [apiPart, workerPart]
      .flatMap((part) => part.split('\n'))
      .filter((l) => l.startsWith('{'));
    const parsed = lines.map((l) => JSON.parse(l) as { time: string; level: string; context?: string; msg: string; jobId?: string });
    expect(parsed.length).toBeGreaterThan(3);
    for (const p of parsed) {
      expect(new Date(p.time).toISOString()).toBe(p.time);
      expect(['log', 'warn', 'error', 'debug', 'verbose', 'fatal']).toContain(p.level);
      expect(typeof p.msg).toBe('string');
    }
    // Every worker line of the run is JSON (the tail may start mid-line).
    expect(workerPart.trim().split('\n').slice(1).filter((l) => !l.startsWith('{'))).toEqual([]);
    expect(parsed.find((p) => p.jobId === jobs[1].id && p.context === 'BackupWorker')?.msg).toBe(`job ${jobs[1].id}: succeeded`);
    expect(app.logs()).not.toContain(OK_SECRET);
    expect(app.logs()).not.toContain(vcsim.password);
  });

  it('sends policy.run.finished when a policy run ends', async () => {
    await app.api('POST', '/api/webhooks', { name: 'policies', url: `${receiver.url}/policy`, events: ['policy.run.finished'], secret: OK_SECRET });
    const policy = await app.api<{ id: string }>('POST', '/api/policies', {
      name: 'obs-run-now',
      schedule: { daily: '03:00', timeZone: 'UTC' },
      selection: { vmIds: [vmId] },
    });
    await app.api('POST', `/api/policies/${policy.id}/run`);
    const request = await until('the policy.run.finished request', async () => receiver.received.find((r) => r.path === '/policy'), 60_000);
    expect(validSignature(request, OK_SECRET)).toBe(true);
    const body = JSON.parse(request.body) as { event: string; run: { policyId: string; policyName: string; state: string; manual: boolean; vms: { vmId: string; outcome: string }[] } };
    expect(body).toMatchObject({ event: 'policy.run.finished', run: { policyId: policy.id, policyName: 'obs-run-now', state: 'succeeded', manual: true } });
    expect(body.run.vms.map((v) => [v.vmId, v.outcome])).toEqual([[vmId, 'succeeded']]);
  });

  it('sends backup.failed when a backup fails (host gone)', async () => {
    await vcsim.stop();
    const failed = await backup();
    expect(failed.state).toBe('failed');
    const request = await until('the backup.failed request', async () =>
      receiver.received.find((r) => r.path === '/ok' && (JSON.parse(r.body) as { event: string }).event === 'backup.failed'),
    );
    expect(validSignature(request, OK_SECRET)).toBe(true);
    expect(JSON.parse(request.body)).toMatchObject({ event: 'backup.failed', job: { id: failed.id, state: 'failed', error: failed.error } });
    // The flaky hook is not subscribed to failures.
    const flaky = await app.api<{ items: { event: string }[] }>('GET', `/api/webhooks/${hooks.flaky}/deliveries`);
    expect(flaky.items.map((d) => d.event)).not.toContain('backup.failed');
  });
});
