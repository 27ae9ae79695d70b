// The HTTP API end to end: a real Nest app listening on 127.0.0.1, SQLite in a temp folder, the Redis of the jest
// global setup (its own database number, so no other suite's worker takes our jobs), a real repository for the
// raw disk download, and vcsim for host sync and host errors.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Queue } from 'bullmq';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { BACKUP_QUEUE } from '@vmkeep/contracts';
import { APP_CONFIG, AppConfig, loadConfig } from '@vmkeep/config';
import { BufferDisk } from '@vmkeep/disk';
import { AuditLogEntity, HostEntity, JobEntity, RestorePointEntity, VmDiskEntity, VmEntity } from '@vmkeep/persistence';
import { parseRedisUrl } from '@vmkeep/queue';
import { CHUNKS_DIR, Repository } from '@vmkeep/repository';
import { AppModule } from '../apps/api/src/app.module';
import { configureApp } from '../apps/api/src/app';
import type { RestorePointDto } from '../apps/api/src/restore-points/restore-points.dto';
import type { VmDto } from '../apps/api/src/vms/vms.dto';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

/** Redis database of this suite inside the shared test Redis. */
const REDIS_DB = 11;
const MiB = 1024 * 1024;

function redisUrlForSuite(): string {
  const base = process.env.TEST_REDIS_URL;
  if (!base) throw new Error('TEST_REDIS_URL is not set: run through jest (its global setup starts Redis)');
  const url = new URL(base);
  url.pathname = `/${REDIS_DB}`;
  return url.toString();
}

describe('API', () => {
  let dir: string;
  let config: AppConfig;
  let app: INestApplication;
  let base: string;
  let data: DataSource;
  let queue: Queue;
  let adminToken: string;
  let operatorToken: string;
  let viewerToken: string;
  let sim: VcsimInstance | undefined;

  const api = () => request(base);
  const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
  async function login(username: string, password: string): Promise<string> {
    const res = await api().post('/api/auth/login').send({ username, password }).expect(200);
    return res.body.token as string;
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-api-'));
    config = loadConfig({ VMKEEP_DATA_DIR: dir, REDIS_URL: redisUrlForSuite(), VMKEEP_API_HOST: '127.0.0.1' }, dir);
    queue = new Queue(BACKUP_QUEUE, { connection: parseRedisUrl(config.redisUrl!) });
    await queue.obliterate({ force: true });
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).overrideProvider(APP_CONFIG).useValue(config).compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    configureApp(app);
    await app.listen(0, '127.0.0.1');
    const address = app.getHttpServer().address() as { port: number };
    base = `http://127.0.0.1:${address.port}`;
    data = app.get(DataSource);
  });

  afterAll(async () => {
    await app?.close();
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    await sim?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('authentication', () => {
    it('serves health without a token', async () => {
      const res = await api().get('/api/health').expect(200);
      expect(res.body).toEqual({ status: 'ok', database: true, queue: true, queued: 0 });
    });

    it('answers 401 without a token or with a bad one', async () => {
      const none = await api().get('/api/hosts').expect(401);
      expect(none.body.message).toMatch(/missing bearer token/);
      await api().get('/api/hosts').set('Authorization', 'Basic YWRtaW46YWRtaW4=').expect(401);
      const bad = await api().get('/api/hosts').set(auth('vmk_not-a-real-token')).expect(401);
      expect(bad.body.message).toBe('invalid or expired token');
    });

    it('created the first admin with a generated password in a 0600 file', async () => {
      const file = config.admin.passwordFile;
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      const password = fs.readFileSync(file, 'utf8').trim();
      expect(password.length).toBeGreaterThanOrEqual(20);
      adminToken = await login('admin', password);
      const me = await api().get('/api/auth/me').set(auth(adminToken)).expect(200);
      expect(me.body).toMatchObject({ username: 'admin', role: 'admin' });
    });

    it('refuses a wrong password with a generic 401 and audits it', async () => {
      const wrong = await api().post('/api/auth/login').send({ username: 'admin', password: 'nope' }).expect(401);
      const unknown = await api().post('/api/auth/login').send({ username: 'ghost', password: 'nope' }).expect(401);
      expect(wrong.body.message).toBe('invalid username or password');
      expect(unknown.body.message).toBe(wrong.body.message);
      const failures = await data.getRepository(AuditLogEntity).findBy({ action: 'auth.login.failed' });
      expect(failures.map((f) => f.username).sort()).toEqual(['admin', 'ghost']);
      expect(JSON.stringify(failures)).not.toContain('nope');
    });

    it('lets an admin create users with roles; others get 403', async () => {
      for (const [username, role] of [['olivia', 'operator'], ['victor', 'viewer']]) {
        const res = await api().post('/api/users').set(auth(adminToken)).send({ username, password: `${username}-password`, role }).expect(201);
        expect(res.body).toMatchObject({ username, role });
        expect(res.body.passwordHash).toBeUndefined();
      }
      operatorToken = await login('olivia', 'olivia-password');
      viewerToken = await login('victor', 'victor-password');
      await api().get('/api/users').set(auth(viewerToken)).expect(403);
      const list = await api().get('/api/users').set(auth(adminToken)).expect(200);
      expect(list.body.map((u: { username: string }) => u.username)).toEqual(['admin', 'olivia', 'victor']);
      const bad = await api().post('/api/users').set(auth(adminToken)).send({ username: 'x', password: 'long-enough', role: 'root' }).expect(400);
      expect(bad.body.message).toEqual([expect.stringContaining('role')]);
      const temp = await api().post('/api/users').set(auth(adminToken)).send({ username: 'temp', password: 'temp-password', role: 'viewer' }).expect(201);
      const tempToken = await login('temp', 'temp-password');
      await api().delete(`/api/users/${temp.body.id}`).set(auth(adminToken)).expect(204);
      await api().get('/api/auth/me').set(auth(tempToken)).expect(401);
      const me = await api().get('/api/auth/me').set(auth(adminToken)).expect(200);
      const self = await api().delete(`/api/users/${me.body.id}`).set(auth(adminToken)).expect(409);
      expect(self.body.message).toBe('you cannot delete your own user');
    });

    it('creates, lists and revokes API tokens; the value is shown once', async () => {
      const created = await api().post('/api/auth/tokens').set(auth(operatorToken)).send({ name: 'ci' }).expect(201);
      const token = created.body.token as string;
      expect(token).toMatch(/^vmk_/);
      await api().get('/api/auth/me').set(auth(token)).expect(200);
      const list = await api().get('/api/auth/tokens').set(auth(operatorToken)).expect(200);
      expect(list.body).toEqual([expect.objectContaining({ id: created.body.id, name: 'ci' })]);
      expect(JSON.stringify(list.body)).not.toContain(token);
      // Someone else's token is not found.
      await api().delete(`/api/auth/tokens/${created.body.id}`).set(auth(viewerToken)).expect(404);
      await api().delete(`/api/auth/tokens/${created.body.id}`).set(auth(operatorToken)).expect(204);
      await api().get('/api/auth/me').set(auth(token)).expect(401);
    });
  });

  describe('hosts', () => {
    const body = { name: 'vc-lab', url: 'https://127.0.0.1:1', username: 'administrator@vsphere.local', password: 'Host-Pa55word!' };
    let hostId: string;

    it('rejects invalid input with 400 naming the field', async () => {
      const badUrl = await api().post('/api/hosts').set(auth(adminToken)).send({ ...body, url: 'not a url' }).expect(400);
      expect(badUrl.body.message).toEqual(['url must be an https:// URL of the vCenter or ESXi host']);
      const unknown = await api().post('/api/hosts').set(auth(adminToken)).send({ ...body, colour: 'blue' }).expect(400);
      expect(unknown.body.message).toEqual(['property colour should not exist']);
      const missing = await api().post('/api/hosts').set(auth(adminToken)).send({ name: 'x', url: body.url, username: 'u' }).expect(400);
      expect(missing.body.message.join(' ')).toMatch(/password/);
      const thumb = await api().post('/api/hosts').set(auth(adminToken)).send({ ...body, thumbprint: 'zz' }).expect(400);
      expect(thumb.body.message).toEqual([expect.stringMatching(/^thumbprint must be/)]);
      await api().get('/api/hosts/not-a-uuid').set(auth(adminToken)).expect(400);
      const malformed = await api().post('/api/hosts').set(auth(adminToken)).set('Content-Type', 'application/json').send('{"name":').expect(400);
      expect(malformed.body.statusCode).toBe(400);
    });

    it('never returns the password and keeps it sealed in the database', async () => {
      await api().post('/api/hosts').set(auth(viewerToken)).send(body).expect(403);
      const created = await api().post('/api/hosts').set(auth(adminToken)).send(body).expect(201);
      hostId = created.body.id;
      expect(created.body).toMatchObject({ name: 'vc-lab', url: body.url, insecure: false });
      for (const res of [
        created,
        await api().get('/api/hosts').set(auth(viewerToken)).expect(200),
        await api().get(`/api/hosts/${hostId}`).set(auth(viewerToken)).expect(200),
        await api().patch(`/api/hosts/${hostId}`).set(auth(adminToken)).send({ insecure: true }).expect(200),
      ]) {
        expect(res.text).not.toContain(body.password);
        expect(res.text).not.toMatch(/password/i);
      }
      const row = await data.getRepository(HostEntity).findOneByOrFail({ id: hostId });
      expect(row.passwordSealed).toMatch(/^v1:/);
      expect(row.passwordSealed).not.toContain(body.password);
      const audit = await data.getRepository(AuditLogEntity).findBy({ target: hostId });
      expect(audit.map((a) => a.action).sort()).toEqual(['host.create', 'host.update']);
      expect(JSON.stringify(audit)).not.toContain(body.password);
      await api().post('/api/hosts').set(auth(adminToken)).send(body).expect(409);
    });

    it('maps an unreachable host to 502 with a clear message', async () => {
      const res = await api().post(`/api/hosts/${hostId}/test`).set(auth(adminToken)).expect(502);
      expect(res.body.message).toMatch(/^vc-lab: host unreachable/);
      expect(res.body.code).toBe('host_unreachable');
      const host = await api().get(`/api/hosts/${hostId}`).set(auth(adminToken)).expect(200);
      expect(host.body.lastError).toBeNull(); // a test does not change the sync state
      const sync = await api().post(`/api/hosts/${hostId}/sync`).set(auth(adminToken)).expect(502);
      expect(sync.body.message).toMatch(/unreachable/);
      const after = await api().get(`/api/hosts/${hostId}`).set(auth(adminToken)).expect(200);
      expect(after.body.lastError).toBe(sync.body.message);
    });

    it('deletes a host (admin only)', async () => {
      await api().delete(`/api/hosts/${hostId}`).set(auth(operatorToken)).expect(403);
      await api().delete(`/api/hosts/${hostId}`).set(auth(adminToken)).expect(204);
      await api().get(`/api/hosts/${hostId}`).set(auth(adminToken)).expect(404);
    });
  });

  describe('backups and jobs', () => {
    let vm: VmEntity;
    let missingVm: VmEntity;
    let otherVm: VmEntity;

    beforeAll(async () => {
      const host = await data.getRepository(HostEntity).save(
        data.getRepository(HostEntity).create({ name: 'jobs-host', url: 'https://127.0.0.1:2', username: 'u', passwordSealed: 'v1:x' }),
      );
      const vms = data.getRepository(VmEntity);
      vm = await vms.save(vms.create({ hostId: host.id, moref: 'vm-10', name: 'web-01', missing: false }));
      missingVm = await vms.save(vms.create({ hostId: host.id, moref: 'vm-11', name: 'gone-01', missing: true }));
      otherVm = await vms.save(vms.create({ hostId: host.id, moref: 'vm-12', name: 'app-02', missing: false }));
      await data.getRepository(VmDiskEntity).save([
        { vmId: vm.id, deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 4 * MiB, fileName: '[ds] web-01/web-01.vmdk' },
        { vmId: otherVm.id, deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 3 * MiB, fileName: '[ds] app-02/app-02.vmdk' },
        { vmId: otherVm.id, deviceKey: 2001, label: 'Hard disk 2', capacityBytes: 5 * MiB + 512, fileName: '[ds] app-02/app-02_1.vmdk' },
      ]);
    });

    it('lists VMs with filters, their disk count and size, and shows one with its disks', async () => {
      const all = await api().get('/api/vms').set(auth(viewerToken)).expect(200);
      expect(all.body.map((v: VmDto) => [v.name, v.diskCount, v.capacityBytes])).toEqual([
        ['app-02', 2, 8 * MiB + 512],
        ['gone-01', 0, 0],
        ['web-01', 1, 4 * MiB],
      ]);
      const named = await api().get('/api/vms').query({ name: 'web' }).set(auth(viewerToken)).expect(200);
      expect(named.body.map((v: VmEntity) => v.id)).toEqual([vm.id]);
      const one = await api().get(`/api/vms/${vm.id}`).set(auth(viewerToken)).expect(200);
      expect(one.body).toMatchObject({ name: 'web-01', moref: 'vm-10', diskCount: 1, capacityBytes: 4 * MiB, lastRestorePoint: null });
      expect(one.body.disks).toEqual([expect.objectContaining({ deviceKey: 2000, capacityBytes: 4 * MiB })]);
    });

    it('refuses a backup by a viewer (403) and queues exactly one BullMQ job for an operator', async () => {
      await api().post(`/api/vms/${vm.id}/backup`).set(auth(viewerToken)).send({}).expect(403);
      const res = await api().post(`/api/vms/${vm.id}/backup`).set(auth(operatorToken)).send({ quiesce: true }).expect(202);
      expect(res.body).toMatchObject({ type: 'backup', state: 'queued', vmId: vm.id, options: { quiesce: true }, progress: 0 });
      const jobs = await queue.getJobs(['waiting', 'delayed', 'active', 'prioritized']);
      expect(jobs.map((j) => [j.id, j.data])).toEqual([[res.body.id, { jobId: res.body.id }]]);
      const row = await data.getRepository(JobEntity).findOneByOrFail({ id: res.body.id });
      expect(row.requestedBy).not.toBeNull();

      const again = await api().post(`/api/vms/${vm.id}/backup`).set(auth(operatorToken)).send({}).expect(409);
      expect(again.body.message).toMatch(/already has a queued backup job/);
      expect(await queue.count()).toBe(1);
      const bad = await api().post(`/api/vms/${vm.id}/backup`).set(auth(operatorToken)).send({ quiesce: 'yes' }).expect(400);
      expect(bad.body.message).toEqual(['quiesce must be a boolean value']);
    });

    it('refuses a VM marked missing and unknown VMs', async () => {
      const res = await api().post(`/api/vms/${missingVm.id}/backup`).set(auth(operatorToken)).send({}).expect(409);
      expect(res.body.message).toMatch(/not found on its host/);
      await api().post('/api/vms/00000000-0000-4000-8000-000000000000/backup').set(auth(operatorToken)).send({}).expect(404);
    });

    it('cancels a queued job: off the queue and marked cancelled', async () => {
      const list = await api().get('/api/jobs').query({ vmId: vm.id }).set(auth(viewerToken)).expect(200);
      expect(list.body).toMatchObject({ total: 1, page: 1 });
      const jobId = list.body.items[0].id as string;
      await api().post(`/api/jobs/${jobId}/cancel`).set(auth(viewerToken)).expect(403);
      const res = await api().post(`/api/jobs/${jobId}/cancel`).set(auth(operatorToken)).expect(200);
      expect(res.body).toMatchObject({ id: jobId, state: 'cancelled' });
      expect(res.body.finishedAt).not.toBeNull();
      expect(await queue.getJob(jobId)).toBeUndefined();
      await api().post(`/api/jobs/${jobId}/cancel`).set(auth(operatorToken)).expect(409);
      const cancelled = await api().get('/api/jobs').query({ state: 'cancelled' }).set(auth(viewerToken)).expect(200);
      expect(cancelled.body.items.map((j: JobEntity) => j.id)).toEqual([jobId]);
      await api().get('/api/jobs').query({ state: 'sleeping' }).set(auth(viewerToken)).expect(400);
    });

    it('creates one job when backups of a VM are requested concurrently', async () => {
      const burst = await Promise.all([1, 2, 3, 4].map(() => api().post(`/api/vms/${otherVm.id}/backup`).set(auth(operatorToken)).send({})));
      expect(burst.map((r) => r.status).sort()).toEqual([202, 409, 409, 409]);
      const winner = burst.find((r) => r.status === 202)!.body.id as string;
      expect(await data.getRepository(JobEntity).findBy({ vmId: otherVm.id })).toEqual([expect.objectContaining({ id: winner, state: 'queued' })]);
      expect((await queue.getJobs(['waiting'])).map((j) => j.id)).toEqual([winner]);
      await api().post(`/api/jobs/${winner}/cancel`).set(auth(operatorToken)).expect(200);
    });

    it('asks the worker to stop a running job', async () => {
      const job = await data.getRepository(JobEntity).save({ type: 'backup', state: 'running', vmId: vm.id, requestedBy: null, options: {}, startedAt: new Date() });
      const res = await api().post(`/api/jobs/${job.id}/cancel`).set(auth(operatorToken)).expect(200);
      expect(res.body).toMatchObject({ state: 'running', cancelRequested: true });
      await data.getRepository(JobEntity).update(job.id, { state: 'cancelled', finishedAt: new Date() });
    });

    it('audits backup start and cancel; the audit log is admin only', async () => {
      await api().get('/api/audit').set(auth(operatorToken)).expect(403);
      const res = await api().get('/api/audit').query({ limit: 500 }).set(auth(adminToken)).expect(200);
      const actions = res.body.items.map((e: AuditLogEntity) => e.action);
      for (const a of ['auth.login', 'auth.login.failed', 'token.create', 'token.delete', 'host.create', 'host.delete', 'backup.start', 'job.cancel']) {
        expect(actions).toContain(a);
      }
      expect(res.body.total).toBe(actions.length);
    });
  });

  describe('restore point download', () => {
    let pointId: string;
    let image: Buffer;
    let repoDir: string;

    beforeAll(async () => {
      // 4 MiB + 1000 bytes: random, zero, random chunks and a short last chunk.
      image = Buffer.concat([randomBytes(MiB), Buffer.alloc(MiB), randomBytes(2 * MiB + 1000)]);
      repoDir = path.join(dir, 'repository');
      const repo = await Repository.init(repoDir, { chunkSize: MiB });
      const writer = repo.beginPoint();
      await writer.writeDisk('disk-2000', new BufferDisk(image));
      await writer.commit({ vm: 'web-01' });
      const vm = await data.getRepository(VmEntity).findOneByOrFail({ moref: 'vm-10' });
      const point = await data.getRepository(RestorePointEntity).save({
        vmId: vm.id,
        jobId: null,
        repositoryPointId: writer.id,
        repositoryPath: repoDir,
        disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: image.length, fileName: '[ds] web-01/web-01.vmdk' }],
        sizeBytes: image.length,
        storedBytes: 0,
      });
      pointId = point.id;
    });

    it('lists points and shows the newest on the VM', async () => {
      const list = await api().get('/api/restore-points').set(auth(viewerToken)).expect(200);
      expect(list.body.map((p: RestorePointDto) => [p.id, p.vmName])).toEqual([[pointId, 'web-01']]);
      const one = await api().get(`/api/restore-points/${pointId}`).set(auth(viewerToken)).expect(200);
      expect(one.body).toMatchObject({ id: pointId, vmName: 'web-01' });
      const vmId = list.body[0].vmId as string;
      const vm = await api().get(`/api/vms/${vmId}`).set(auth(viewerToken)).expect(200);
      expect(vm.body.lastRestorePoint).toMatchObject({ id: pointId, vmName: 'web-01', disks: [{ key: 'disk-2000', capacityBytes: image.length }] });
      expect(vm.body.lastRestorePoint.repositoryPath).toBeUndefined();
    });

    it('streams the whole disk byte-exact', async () => {
      const res = await api().get(`/api/restore-points/${pointId}/disks/disk-2000/raw`).set(auth(viewerToken))
        .buffer(true).parse(binaryParser).expect(200);
      expect(res.headers['content-type']).toBe('application/octet-stream');
      expect(res.headers['content-length']).toBe(String(image.length));
      expect(res.headers['content-disposition']).toMatch(/^attachment; filename=".*Hard_disk_1\.raw"$/);
      expect(sha256(res.body as Buffer)).toBe(sha256(image));
      const head = await api().head(`/api/restore-points/${pointId}/disks/disk-2000/raw`).set(auth(viewerToken)).expect(200);
      expect(head.headers['content-length']).toBe(String(image.length));
    });

    it('serves a single Range with 206 and refuses an unsatisfiable one with 416', async () => {
      const get = (range: string) => api().get(`/api/restore-points/${pointId}/disks/disk-2000/raw`).set(auth(viewerToken)).set('Range', range).buffer(true).parse(binaryParser);
      const mid = await get(`bytes=${MiB - 10}-${2 * MiB + 9}`).expect(206);
      expect(mid.headers['content-range']).toBe(`bytes ${MiB - 10}-${2 * MiB + 9}/${image.length}`);
      expect(Buffer.compare(mid.body as Buffer, image.subarray(MiB - 10, 2 * MiB + 10))).toBe(0);
      const tail = await get('bytes=-500').expect(206);
      expect(Buffer.compare(tail.body as Buffer, image.subarray(image.length - 500))).toBe(0);
      const open = await get(`bytes=${4 * MiB}-`).expect(206);
      expect((open.body as Buffer).length).toBe(1000);
      const beyond = await get(`bytes=${image.length}-`).expect(416);
      expect(beyond.headers['content-range']).toBe(`bytes */${image.length}`);
    });

    it('answers 404 for unknown points and disks', async () => {
      await api().get(`/api/restore-points/${pointId}/disks/disk-9999/raw`).set(auth(viewerToken)).expect(404);
      await api().get('/api/restore-points/00000000-0000-4000-8000-000000000000').set(auth(viewerToken)).expect(404);
      await api().get(`/api/restore-points/${pointId}/disks/disk-2000/raw`).expect(401);
    });

    it('aborts the transfer when a chunk is missing instead of sending filler', async () => {
      // Remove the chunk at offset 2 MiB (ids are SHA-256 of the plaintext in an unencrypted repository).
      const id = sha256(image.subarray(2 * MiB, 3 * MiB));
      const chunkFile = findFile(path.join(repoDir, CHUNKS_DIR), id);
      fs.rmSync(chunkFile);
      const received = await rawGet(`${base}/api/restore-points/${pointId}/disks/disk-2000/raw`, viewerToken);
      expect(received.status).toBe(200);
      expect(received.complete).toBe(false);
      expect(received.bytes.length).toBeLessThan(image.length);
      // What did arrive is the real data, never zeros in place of the missing chunk.
      expect(Buffer.compare(received.bytes, image.subarray(0, received.bytes.length))).toBe(0);
      expect(received.bytes.length).toBeLessThanOrEqual(2 * MiB);
    });
  });

  describe('OpenAPI', () => {
    it('serves the document with bearer auth and the routes', async () => {
      const doc = await api().get('/api/docs-json').expect(200);
      expect(doc.body.openapi).toMatch(/^3\./);
      expect(doc.body.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
      for (const p of ['/api/health', '/api/auth/login', '/api/hosts', '/api/hosts/{id}/sync', '/api/vms/{id}/backup', '/api/jobs/{id}/cancel', '/api/restore-points/{id}/disks/{key}/raw']) {
        expect(Object.keys(doc.body.paths)).toContain(p);
      }
      expect(doc.body.components.schemas.CreateHostDto.required).toEqual(expect.arrayContaining(['name', 'url', 'username', 'password']));
      const ui = await api().get('/api/docs').expect(200);
      expect(ui.text).toMatch(/swagger/i);
    });
  });

  describe('host sync against vcsim', () => {
    let hostId: string;

    beforeAll(async () => {
      const imageDir = fs.mkdtempSync(path.join(dir, 'images-'));
      const imagePath = path.join(imageDir, 'disk.raw');
      fs.writeFileSync(imagePath, Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(MiB - 64 * 1024)]));
      sim = await startVcsim({ seed: [{ name: 'api-sync-vm', disks: [{ image: imagePath }] }] });
    });

    it('refuses an untrusted certificate and tells the thumbprint to pin', async () => {
      const created = await api().post('/api/hosts').set(auth(adminToken))
        .send({ name: 'vcsim', url: sim!.url, username: sim!.username, password: sim!.password }).expect(201);
      hostId = created.body.id;
      const res = await api().post(`/api/hosts/${hostId}/test`).set(auth(adminToken)).expect(502);
      expect(res.body.code).toBe('host_certificate');
      expect(res.body.presentedThumbprint).toBe(sim!.thumbprint);
      expect(res.body.message).toContain(sim!.thumbprint);
      const fetched = await api().post('/api/hosts/thumbprint').set(auth(adminToken)).send({ url: sim!.url }).expect(200);
      expect(fetched.body.thumbprint).toBe(sim!.thumbprint);
    });

    it('refuses wrong credentials with 502 naming the cause', async () => {
      await api().patch(`/api/hosts/${hostId}`).set(auth(adminToken)).send({ thumbprint: sim!.thumbprint, password: 'wrong-password' }).expect(200);
      const res = await api().post(`/api/hosts/${hostId}/test`).set(auth(adminToken)).expect(502);
      expect(res.body).toMatchObject({ code: 'host_auth', message: 'vcsim: the host refused the user name or password' });
    });

    it('syncs the inventory into VMs and disks', async () => {
      await api().patch(`/api/hosts/${hostId}`).set(auth(adminToken)).send({ password: sim!.password }).expect(200);
      const test = await api().post(`/api/hosts/${hostId}/test`).set(auth(adminToken)).expect(200);
      expect(test.body.apiType).toBe('VirtualCenter');
      const sync = await api().post(`/api/hosts/${hostId}/sync`).set(auth(adminToken)).expect(200);
      expect(sync.body.vms).toBeGreaterThanOrEqual(1);
      expect(sync.body).toMatchObject({ hostId, added: sync.body.vms, missing: 0 });
      const vms = await api().get('/api/vms').query({ hostId, name: 'api-sync-vm' }).set(auth(viewerToken)).expect(200);
      expect(vms.body).toHaveLength(1);
      const seeded = sim!.vms.find((v) => v.name === 'api-sync-vm')!;
      expect(vms.body[0]).toMatchObject({
        moref: seeded.id,
        missing: false,
        diskCount: seeded.disks.length,
        capacityBytes: seeded.disks.reduce((sum, d) => sum + d.capacityBytes, 0),
      });
      const detail = await api().get(`/api/vms/${vms.body[0].id}`).set(auth(viewerToken)).expect(200);
      expect(detail.body.disks.map((d: VmDiskEntity) => [d.deviceKey, d.capacityBytes])).toEqual(seeded.disks.map((d) => [d.key, d.capacityBytes]));
      const host = await api().get(`/api/hosts/${hostId}`).set(auth(adminToken)).expect(200);
      expect(host.body).toMatchObject({ apiType: 'vcenter', lastError: null });
      expect(host.body.lastSyncAt).not.toBeNull();
    });
  });
});

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** supertest parser that keeps the body as a Buffer. */
function binaryParser(res: request.Response, callback: (err: Error | null, body: Buffer) => void): void {
  const stream = res as unknown as http.IncomingMessage;
  const parts: Buffer[] = [];
  stream.on('data', (c: Buffer) => parts.push(c));
  stream.on('end', () => callback(null, Buffer.concat(parts)));
  stream.on('error', (err) => callback(err, Buffer.concat(parts)));
}

function findFile(root: string, name: string): string {
  for (const entry of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.startsWith(name)) return path.join(entry.parentPath, entry.name);
  }
  throw new Error(`no file named ${name} under ${root}`);
}

/** A GET that reports whether the body arrived complete instead of failing on a cut connection. */
function rawGet(url: string, token: string): Promise<{ status: number; bytes: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Authorization: `Bearer ${token}` } }, (res) => {
      const parts: Buffer[] = [];
      let complete = false;
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => (complete = res.complete));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(parts), complete: complete && res.complete }));
      res.on('error', () => undefined);
    });
    req.on('error', reject);
  });
}
