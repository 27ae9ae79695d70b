// Policies in process: the real API (SQLite in a temp folder, the test Redis on its own database number), the real
// BullMQ job schedulers, and PolicyRunner against real job rows and a real repository. No worker consumes the
// backup queue here: the test plays the backup worker by moving job rows through their states and committing
// real restore points, which is what lets it decide outcomes (a failure, a retry) deterministically.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Queue } from 'bullmq';
import request from 'supertest';
import { DataSource, In } from 'typeorm';
import { BACKUP_QUEUE } from '@vmkeep/contracts';
import { APP_CONFIG, AppConfig, loadConfig } from '@vmkeep/config';
import { BufferDisk } from '@vmkeep/disk';
import {
  HostEntity,
  JobEntity,
  PolicyRunEntity,
  RestorePointEntity,
  UserEntity,
  VmDiskEntity,
  VmEntity,
  hashPassword,
} from '@vmkeep/persistence';
import { POLICY_QUEUE, POLICY_RUN_POLL_MS, PolicyRunner, schedulerId } from '@vmkeep/policies';
import { parseRedisUrl } from '@vmkeep/queue';
import { Repository } from '@vmkeep/repository';
import { AppModule } from '../apps/api/src/app.module';
import { configureApp } from '../apps/api/src/app';

const REDIS_DB = 13;

describe('policies (API, schedulers, runner)', () => {
  let dir: string;
  let config: AppConfig;
  let app: INestApplication;
  let data: DataSource;
  let policyQueue: Queue;
  let backupQueue: Queue;
  let admin: string;
  let viewer: string;
  let vms: Record<string, VmEntity>;

  const api = () => request(app.getHttpServer());
  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-policies-'));
    const redis = new URL(process.env.TEST_REDIS_URL!);
    redis.pathname = `/${REDIS_DB}`;
    config = loadConfig({ VMKEEP_DATA_DIR: dir, REDIS_URL: redis.toString(), VMKEEP_ADMIN_PASSWORD: 'admin-pw-123' }, dir);
    const connection = parseRedisUrl(config.redisUrl!);
    policyQueue = new Queue(POLICY_QUEUE, { connection });
    backupQueue = new Queue(BACKUP_QUEUE, { connection });
    await Promise.all([policyQueue.obliterate({ force: true }), backupQueue.obliterate({ force: true })]);
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(APP_CONFIG)
      .useValue(config)
      .overrideProvider(POLICY_RUN_POLL_MS)
      .useValue(100)
      .compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    configureApp(app);
    await app.init();
    data = app.get(DataSource);
    admin = (await api().post('/api/auth/login').send({ username: 'admin', password: 'admin-pw-123' }).expect(200)).body.token;
    await data.getRepository(UserEntity).save({ username: 'val', passwordHash: await hashPassword('viewer-pw', { N: 1024, r: 8, p: 1 }), role: 'viewer' });
    viewer = (await api().post('/api/auth/login').send({ username: 'val', password: 'viewer-pw' }).expect(200)).body.token;

    const host = await data.getRepository(HostEntity).save({ name: 'vc1', url: 'https://vc1.invalid', username: 'u', passwordSealed: 'x' });
    const seed = [
      ['web-01', 'esx-a', 'prod', 'ds1'],
      ['web-02', 'esx-b', 'prod', 'ds1'],
      ['db-01', 'esx-a', 'data', 'ds2'],
    ];
    vms = {};
    for (const [name, esxHost, cluster, datastore] of seed) {
      const vm = await data.getRepository(VmEntity).save({ hostId: host.id, moref: `vm-${name}`, name, esxHost, cluster, datacenter: 'dc1' });
      await data.getRepository(VmDiskEntity).save({ vmId: vm.id, deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 1 << 20, fileName: `[${datastore}] ${name}/${name}.vmdk`, datastore });
      vms[name] = vm;
    }
  });

  afterAll(async () => {
    await app?.close();
    for (const q of [policyQueue, backupQueue]) {
      await q?.obliterate({ force: true }).catch(() => undefined);
      await q?.close();
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const nightly = { name: 'nightly-web', schedule: { daily: '22:30', timeZone: 'Europe/Berlin' }, selection: { namePatterns: ['web-*'] } };

  describe('CRUD and validation', () => {
    let id: string;

    it('creates a policy, compiles its schedule and registers the BullMQ job scheduler', async () => {
      const res = await api().post('/api/policies').set(bearer(admin)).send(nightly).expect(201);
      id = res.body.id;
      expect(res.body).toMatchObject({
        name: 'nightly-web',
        enabled: true,
        cron: '30 22 * * *',
        timeZone: 'Europe/Berlin',
        quiesce: 'try',
        retention: { keepLast: 7 },
        window: null,
        overlaps: [],
      });
      expect(res.body.vms.map((v: { name: string }) => v.name)).toEqual(['web-01', 'web-02']);
      const scheduler = await policyQueue.getJobScheduler(schedulerId(id));
      expect(scheduler).toMatchObject({ pattern: '30 22 * * *', tz: 'Europe/Berlin' });
      expect(new Date(res.body.nextRunAt).getTime()).toBe(scheduler!.next);
      // 22:30 in Berlin is 21:30 or 20:30 UTC.
      expect([20, 21]).toContain(new Date(res.body.nextRunAt).getUTCHours());
    });

    it.each([
      [{ ...nightly, name: 'x', schedule: { cron: '61 * * * *' } }, /schedule\.cron: minute field "61"/],
      [{ ...nightly, name: 'x', schedule: { daily: '7pm' } }, /schedule\.daily must be HH:MM/],
      [{ ...nightly, name: 'x', schedule: { daily: '10:00', timeZone: 'Nowhere/City' } }, /schedule\.timeZone: unknown IANA time zone/],
      [{ ...nightly, name: 'x', retention: { keepLast: -1 } }, /retention\.keepLast must not be less than 0/],
      [{ ...nightly, name: 'x', retention: { keepDaily: 0 } }, /retention: the policy keeps nothing/],
      [{ ...nightly, name: 'x', quiesce: 'sometimes' }, /quiesce must be one of/],
      [{ ...nightly, name: 'x', concurrency: { perHost: 0 } }, /concurrency\.perHost must not be less than 1/],
      [{ ...nightly, name: 'x', window: { start: '22:00' } }, /window\.end must be HH:MM/],
      [{ ...nightly, name: 'x', selection: { vmIds: ['not-a-uuid'] } }, /selection\.vmIds must hold VM ids/],
      [{ ...nightly, name: 'x', color: 'red' }, /property color should not exist/],
    ])('answers 400 naming the field for %j', async (body, message) => {
      const res = await api().post('/api/policies').set(bearer(admin)).send(body).expect(400);
      expect([res.body.message].flat().join('\n')).toMatch(message);
    });

    it('refuses a second policy with the same name (409) and lets viewers read but not write', async () => {
      await api().post('/api/policies').set(bearer(admin)).send(nightly).expect(409);
      await api().post('/api/policies').set(bearer(viewer)).send({ ...nightly, name: 'other' }).expect(403);
      await api().patch(`/api/policies/${id}`).set(bearer(viewer)).send({ priority: 5 }).expect(403);
      await api().delete(`/api/policies/${id}`).set(bearer(viewer)).expect(403);
      const list = await api().get('/api/policies').set(bearer(viewer)).expect(200);
      expect(list.body.map((p: { name: string }) => p.name)).toEqual(['nightly-web']);
      await api().get('/api/policies').expect(401);
    });

    it('updates part of a policy, re-validates the whole, and keeps the scheduler in step', async () => {
      const res = await api()
        .patch(`/api/policies/${id}`)
        .set(bearer(admin))
        .send({ schedule: { cron: '0 15 1 * * mon-fri', timeZone: 'UTC' }, window: { start: '22:00', end: '06:00' }, priority: 5 })
        .expect(200);
      expect(res.body).toMatchObject({ cron: '0 15 1 * * mon-fri', timeZone: 'UTC', window: { start: '22:00', end: '06:00' }, priority: 5, name: 'nightly-web' });
      expect(await policyQueue.getJobScheduler(schedulerId(id))).toMatchObject({ pattern: '0 15 1 * * mon-fri', tz: 'UTC' });
      await api().patch(`/api/policies/${id}`).set(bearer(admin)).send({ retention: { keepLast: 0 } }).expect(400);

      await api().patch(`/api/policies/${id}`).set(bearer(admin)).send({ enabled: false }).expect(200);
      expect(await policyQueue.getJobScheduler(schedulerId(id))).toBeUndefined();
      expect((await api().get(`/api/policies/${id}`).set(bearer(admin)).expect(200)).body.nextRunAt).toBeNull();
      await api().post(`/api/policies/${id}/run`).set(bearer(admin)).expect(409);
      await api().patch(`/api/policies/${id}`).set(bearer(admin)).send({ enabled: true }).expect(200);
      expect(await policyQueue.getJobScheduler(schedulerId(id))).toBeDefined();
    });

    it('reports a VM in two policies on both, and in the per-VM view', async () => {
      const res = await api().post('/api/policies').set(bearer(admin)).send({ name: 'prod-cluster', schedule: { daily: '01:00' }, selection: { clusters: ['prod'], excludePatterns: ['*-02'] } }).expect(201);
      expect(res.body.vms.map((v: { name: string; reason: string }) => [v.name, v.reason])).toEqual([['web-01', 'cluster prod']]);
      expect(res.body.overlaps).toEqual([{ vmId: vms['web-01'].id, vmName: 'web-01', policies: [{ id, name: 'nightly-web' }] }]);
      expect(res.body.warnings).toEqual(['VM web-01 is also in policy nightly-web']);
      const first = (await api().get(`/api/policies/${id}`).set(bearer(admin))).body;
      expect(first.overlaps.map((o: { vmName: string }) => o.vmName)).toEqual(['web-01']);

      const protection = (await api().get(`/api/vms/${vms['web-01'].id}/protection`).set(bearer(viewer)).expect(200)).body;
      expect(protection).toMatchObject({ vmName: 'web-01', multiplePolicies: true, restorePointCount: 0, storedBytes: 0, lastSuccessAt: null });
      expect(protection.policies.map((p: { name: string; reason: string }) => [p.name, p.reason])).toEqual([
        ['nightly-web', 'name web-*'],
        ['prod-cluster', 'cluster prod'],
      ]);
      expect(protection.warnings[0]).toMatch(/web-01 is in 2 enabled policies/);
      expect(new Date(protection.nextRunAt).getTime()).toBeGreaterThan(Date.now());
      const db = (await api().get(`/api/vms/${vms['db-01'].id}/protection`).set(bearer(admin)).expect(200)).body;
      expect(db).toMatchObject({ policies: [], multiplePolicies: false, nextRunAt: null });
      await api().get('/api/vms/00000000-0000-4000-8000-000000000000/protection').set(bearer(admin)).expect(404);

      await api().delete(`/api/policies/${res.body.id}`).set(bearer(admin)).expect(204);
      expect(await policyQueue.getJobScheduler(schedulerId(res.body.id))).toBeUndefined();
      await api().get(`/api/policies/${res.body.id}`).set(bearer(admin)).expect(404);
    });

    it('queues a run-now job on the policy queue', async () => {
      const res = await api().post(`/api/policies/${id}/run`).set(bearer(admin)).expect(202);
      const job = await policyQueue.getJob(res.body.queueJobId);
      expect(job?.data).toMatchObject({ policyId: id });
      expect(typeof job?.data.requestedAt).toBe('number');
      await job?.remove();
    });
  });

  describe('PolicyRunner', () => {
    let repo: Repository;
    const jobsRepo = () => data.getRepository(JobEntity);
    const pointsRepo = () => data.getRepository(RestorePointEntity);

    beforeAll(async () => {
      repo = await Repository.init(config.repositoryPath);
    });

    /** Commits a real one-disk point for the VM and its row, as the backup worker does. */
    async function commitPoint(vm: VmEntity, jobId: string | null, createdAt?: Date): Promise<RestorePointEntity> {
      const writer = repo.beginPoint();
      await writer.writeDisk('disk-2000', new BufferDisk(Buffer.alloc(1 << 20, vm.name + (createdAt?.toISOString() ?? jobId))));
      const manifest = await writer.commit({ vm: vm.name });
      return pointsRepo().save({
        vmId: vm.id,
        jobId,
        repositoryPointId: manifest.id,
        repositoryPath: config.repositoryPath,
        disks: [],
        storedBytes: 1000,
        ...(createdAt ? { createdAt } : {}),
      });
    }

    /** Plays the backup worker for `ms`: runs queued jobs one by one; `fail(job)` decides failures. */
    async function playWorker(until: Promise<unknown>, fail: (job: JobEntity, vm: VmEntity) => boolean, seenActive: number[]): Promise<void> {
      let done = false;
      void until.finally(() => (done = true));
      while (!done) {
        const active = await jobsRepo().findBy({ state: In(['queued', 'running']) });
        seenActive.push(active.length);
        for (const job of active) {
          const vm = Object.values(vms).find((v) => v.id === job.vmId)!;
          if (fail(job, vm)) {
            await jobsRepo().update(job.id, { state: 'failed', error: 'snapshot failed (simulated host fault)', finishedAt: new Date() });
          } else {
            const point = await commitPoint(vm, job.id);
            await jobsRepo().update(job.id, { state: 'succeeded', restorePointId: point.id, finishedAt: new Date() });
          }
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    }

    it('starts one job per VM within the limits, retries a failure with backoff, prunes after success, never archives', async () => {
      const policy = (
        await api()
          .post('/api/policies')
          .set(bearer(admin))
          .send({
            name: 'runner-web',
            schedule: { cron: '0 0 1 1 *' },
            selection: { namePatterns: ['web-*'] },
            retention: { keepLast: 1 },
            retries: 1,
            retryBackoffSeconds: 1,
            concurrency: { perDatastore: 1 },
            quiesce: 'require',
            cbt: true,
          })
          .expect(201)
      ).body;
      // Older points of web-01: one plain (pruned after the run), one archived (kept whatever the retention says).
      const old = await commitPoint(vms['web-01'], null, new Date('2026-01-01T00:00:00Z'));
      const archived = await commitPoint(vms['web-01'], null, new Date('2025-12-01T00:00:00Z'));
      await repo.archivePoint(archived.repositoryPointId, { retainUntil: '2999-01-01' });

      const runner = app.get(PolicyRunner);
      const tick = new Date(Date.now() - 1500);
      const running = runner.run(policy.id, tick, false);
      let web02Attempts = 0;
      const seenActive: number[] = [];
      await playWorker(running, (job, vm) => vm.name === 'web-02' && ++web02Attempts === 1, seenActive);
      const run = (await running)!;

      expect(run.state).toBe('succeeded');
      expect(run.warnings).toEqual(['VM web-01 is also in policy nightly-web', 'VM web-02 is also in policy nightly-web']);
      const byName = Object.fromEntries(run.vms.map((v) => [v.vmName, v]));
      expect(byName['web-01']).toMatchObject({ outcome: 'succeeded', pruned: 1 });
      expect(byName['web-01'].jobIds).toHaveLength(1);
      expect(byName['web-02'].outcome).toBe('succeeded');
      expect(byName['web-02'].jobIds).toHaveLength(2);
      // Both VMs have a disk on ds1 and the limit is 1 per datastore: never two active jobs at once.
      expect(Math.max(...seenActive)).toBe(1);
      const jobs = await jobsRepo().findBy({ id: In([...byName['web-01'].jobIds, ...byName['web-02'].jobIds]) });
      for (const job of jobs) {
        expect(job.options).toMatchObject({ quiesce: true, quiesceMode: 'require', cbt: true, policyId: policy.id, policyRunId: run.id });
      }
      expect(jobs.map((j) => j.state).sort()).toEqual(['failed', 'succeeded', 'succeeded']);

      // Retention keepLast 1: the old plain point is gone (row and manifest), the archive and the new point stay.
      const left = await pointsRepo().findBy({ vmId: vms['web-01'].id });
      expect(left.map((p) => p.id).sort()).toEqual([archived.id, jobs.find((j) => j.vmId === vms['web-01'].id)!.restorePointId].sort());
      const inRepo = (await repo.listPoints()).map((m) => m.id);
      expect(inRepo).not.toContain(old.repositoryPointId);
      expect(inRepo).toContain(archived.repositoryPointId);

      // The same tick again (a second delivery) does nothing.
      expect(await runner.run(policy.id, tick, false)).toBeNull();
      expect(await data.getRepository(PolicyRunEntity).countBy({ policyId: policy.id })).toBe(1);
      const history = (await api().get(`/api/policies/${policy.id}/runs`).set(bearer(viewer)).expect(200)).body;
      expect(history.map((r: { id: string; state: string }) => [r.id, r.state])).toEqual([[run.id, 'succeeded']]);

      const protection = (await api().get(`/api/vms/${vms['web-02'].id}/protection`).set(bearer(viewer)).expect(200)).body;
      expect(protection).toMatchObject({ restorePointCount: 1, lastSuccessJobId: byName['web-02'].jobIds[1] });
      expect(protection.storedBytes).toBe(1000);
    });

    it('skips VMs whose previous backup still runs, and everything outside the backup window', async () => {
      const busy = await api().post(`/api/vms/${vms['db-01'].id}/backup`).set(bearer(admin)).send({}).expect(202);
      const overlap = (await api().post('/api/policies').set(bearer(admin)).send({ name: 'db', schedule: { daily: '03:00' }, selection: { vmIds: [vms['db-01'].id] } }).expect(201)).body;
      const runner = app.get(PolicyRunner);
      const run1 = (await runner.run(overlap.id, new Date(), false))!;
      expect(run1.state).toBe('skipped');
      expect(run1.vms).toEqual([expect.objectContaining({ vmName: 'db-01', outcome: 'overlap', jobIds: [], message: `skipped: its previous backup (job ${busy.body.id}) is still queued` })]);
      await jobsRepo().update(busy.body.id, { state: 'cancelled', finishedAt: new Date() });

      const now = new Date();
      const hh = (h: number) => String((now.getUTCHours() + h) % 24).padStart(2, '0');
      const closed = (
        await api()
          .post('/api/policies')
          .set(bearer(admin))
          .send({ name: 'closed', schedule: { daily: '03:00' }, window: { start: `${hh(2)}:00`, end: `${hh(3)}:00` }, selection: { clusters: ['data'] } })
          .expect(201)
      ).body;
      const run2 = (await runner.run(closed.id, new Date(), true))!;
      expect(run2).toMatchObject({ state: 'skipped', manual: true });
      expect(run2.vms).toEqual([expect.objectContaining({ vmName: 'db-01', outcome: 'outside-window', jobIds: [] })]);
      expect(run2.vms[0].message).toMatch(/outside the backup window .* \(UTC\)/);
      expect(await jobsRepo().countBy({ vmId: vms['db-01'].id, state: In(['queued', 'running']) })).toBe(0);
    });
  });
});
