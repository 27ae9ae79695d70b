// Security of the HTTP API, end to end on a real Nest app (127.0.0.1, SQLite in a temp folder, the jest global
// Redis on its own database number, vcsim for a host that refuses our password, a real repository for an
// instant-restore session): login throttling and lockout, security headers, JSON-only writes, body limit, CORS,
// id parameter validation, token hygiene — and that no password or token ever reaches a log line.
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INestApplication, LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig, loadConfig } from '@vmkeep/config';
import { BufferDisk } from '@vmkeep/disk';
import { ApiTokenEntity, AuditLogEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { Repository } from '@vmkeep/repository';
import { AppModule } from '../apps/api/src/app.module';
import { configureApp } from '../apps/api/src/app';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const REDIS_DB = 7;
const LOCKOUT_SECONDS = 2;

/** Every line the app logs, at every level. */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  private add(level: string, message: unknown, rest: unknown[]): void {
    this.lines.push([level, message, ...rest].map((p) => (p instanceof Error ? `${p.message}\n${p.stack}` : typeof p === 'string' ? p : JSON.stringify(p))).join(' '));
  }
  log(m: unknown, ...r: unknown[]) { this.add('log', m, r); }
  error(m: unknown, ...r: unknown[]) { this.add('error', m, r); }
  warn(m: unknown, ...r: unknown[]) { this.add('warn', m, r); }
  debug(m: unknown, ...r: unknown[]) { this.add('debug', m, r); }
  verbose(m: unknown, ...r: unknown[]) { this.add('verbose', m, r); }
  fatal(m: unknown, ...r: unknown[]) { this.add('fatal', m, r); }
}

function redisUrlForSuite(): string {
  const base = process.env.TEST_REDIS_URL;
  if (!base) throw new Error('TEST_REDIS_URL is not set: run through jest (its global setup starts Redis)');
  const url = new URL(base);
  url.pathname = `/${REDIS_DB}`;
  return url.toString();
}

describe('API security', () => {
  const adminPassword = `Adm-${randomBytes(9).toString('hex')}`;
  const logger = new CapturingLogger();
  const processOutput: string[] = [];
  const restoreWrites: Array<() => void> = [];
  let dir: string;
  let config: AppConfig;
  let app: INestApplication;
  let base: string;
  let data: DataSource;
  let sim: VcsimInstance;
  let adminToken: string;

  const api = () => request(base);
  const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
  const login = (username: string, password: string) => api().post('/api/auth/login').send({ username, password });
  async function createUser(username: string, password: string): Promise<string> {
    const res = await api().post('/api/users').set(auth(adminToken)).send({ username, password, role: 'operator' }).expect(201);
    return res.body.id as string;
  }

  beforeAll(async () => {
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write.bind(stream);
      stream.write = ((chunk: unknown, ...rest: unknown[]) => {
        processOutput.push(String(chunk));
        return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write;
      restoreWrites.push(() => (stream.write = original));
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-api-security-'));
    config = loadConfig(
      {
        VMKEEP_DATA_DIR: dir,
        REDIS_URL: redisUrlForSuite(),
        VMKEEP_ADMIN_PASSWORD: adminPassword,
        VMKEEP_NBD_PORT: '0',
        VMKEEP_API_BODY_LIMIT_KB: '16',
        VMKEEP_API_CORS_ORIGINS: 'https://ui.example',
        VMKEEP_LOGIN_FREE_FAILURES: '2',
        VMKEEP_LOGIN_BACKOFF_MS: '300',
        VMKEEP_LOGIN_MAX_FAILURES: '4',
        VMKEEP_LOGIN_MAX_FAILURES_PER_ADDRESS: '1000',
        VMKEEP_LOGIN_LOCKOUT_SECONDS: String(LOCKOUT_SECONDS),
      },
      dir,
    );
    sim = await startVcsim({});
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).overrideProvider(APP_CONFIG).useValue(config).compile();
    app = moduleRef.createNestApplication({ logger });
    app.useLogger(logger);
    configureApp(app);
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    data = app.get(DataSource);
    adminToken = (await login('admin', adminPassword).expect(200)).body.token as string;
  });

  afterAll(async () => {
    await app?.close();
    await sim?.stop();
    for (const restore of restoreWrites) restore();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('no secret in logs', () => {
    it('logs no password or token through login, hosts, tokens, instant sessions and failing host tests', async () => {
      const userPassword = `Usr-${randomBytes(9).toString('hex')}`;
      const wrongPassword = `Wrong-${randomBytes(9).toString('hex')}`;
      const hostPassword = `Host-${randomBytes(9).toString('hex')}`;
      await createUser('logcheck', userPassword);
      const session = (await login('logcheck', userPassword).expect(200)).body.token as string;
      await login('logcheck', wrongPassword).expect(401);

      // A host whose password vcsim refuses: the stored-host test and the try-before-save test both fail.
      const host = await api().post('/api/hosts').set(auth(adminToken))
        .send({ name: 'vcsim-wrong', url: sim.url, username: sim.username, password: hostPassword, insecure: true }).expect(201);
      const test = await api().post(`/api/hosts/${host.body.id}/test`).set(auth(adminToken)).expect(502);
      expect(JSON.stringify(test.body)).not.toContain(hostPassword);
      const tried = await api().post('/api/hosts/test').set(auth(adminToken))
        .send({ url: sim.url, username: sim.username, password: hostPassword, insecure: true }).expect(502);
      expect(JSON.stringify(tried.body)).not.toContain(hostPassword);
      await api().post('/api/hosts').set(auth(adminToken))
        .send({ name: 'nowhere', url: 'https://127.0.0.1:1', username: 'root', password: hostPassword }).expect(201)
        .then((r) => api().post(`/api/hosts/${r.body.id}/test`).set(auth(adminToken)).expect(502));

      const apiToken = (await api().post('/api/auth/tokens').set(auth(session)).send({ name: 'ci' }).expect(201)).body.token as string;

      // An instant-restore session of a real point: its NBD URL carries a secret export name.
      const repoDir = path.join(dir, 'repository');
      const repo = await Repository.init(repoDir, { chunkSize: 256 * 1024 });
      const writer = repo.beginPoint();
      await writer.writeDisk('disk-2000', new BufferDisk(Buffer.alloc(1024 * 1024, 7)));
      await writer.commit({ vm: 'sec-vm' });
      const vm = await data.getRepository(VmEntity).save({ hostId: host.body.id as string, moref: 'vm-77', name: 'sec-vm', missing: false });
      const point = await data.getRepository(RestorePointEntity).save({
        vmId: vm.id, jobId: null, repositoryPointId: writer.id, repositoryPath: repoDir,
        disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 1024 * 1024, fileName: '[ds] sec-vm/sec-vm.vmdk' }],
        sizeBytes: 1024 * 1024, storedBytes: 0,
      });
      const instant = await api().post('/api/instant-sessions').set(auth(session)).send({ pointId: point.id, writable: true }).expect(201);
      const exportName = String(instant.body.url).split('/').pop()!;
      expect(exportName.length).toBeGreaterThanOrEqual(16);
      await api().delete(`/api/instant-sessions/${instant.body.id}`).set(auth(session)).send({}).expect((r) => expect(r.status).toBeLessThan(300));

      const secrets = { adminPassword, userPassword, wrongPassword, hostPassword, adminToken, session, apiToken, exportName };
      const everything = [...logger.lines, ...processOutput].join('\n');
      expect(logger.lines.length).toBeGreaterThan(5);
      // The log did record what happened (so the search below looks at real lines).
      expect(everything).toContain('auth.login.failed: user "logcheck" from');
      expect(everything).toMatch(new RegExp(`instant session ${instant.body.id} started`));
      for (const [name, value] of Object.entries(secrets)) {
        expect({ name, leaked: everything.includes(value) }).toEqual({ name, leaked: false });
      }
      const audit = JSON.stringify(await data.getRepository(AuditLogEntity).find());
      for (const [name, value] of Object.entries(secrets)) expect({ name, leaked: audit.includes(value) }).toEqual({ name, leaked: false });
    });
  });

  describe('login throttling', () => {
    it('doubles the wait after the free failures, locks the username out, audits it, and lets it in after the lockout', async () => {
      await createUser('bruteforced', 'right-password');
      await login('bruteforced', 'guess-1').expect(401);
      await login('bruteforced', 'guess-2').expect(401);
      await login('bruteforced', 'guess-3').expect(401);
      const throttled = await login('bruteforced', 'right-password').expect(429);
      expect(throttled.headers['retry-after']).toBe('1');
      expect(throttled.body.message).toMatch(/too many failed logins/);
      await new Promise((r) => setTimeout(r, 350));
      await login('bruteforced', 'guess-4').expect(401);
      const locked = await login('bruteforced', 'right-password').expect(429);
      expect(Number(locked.headers['retry-after'])).toBe(LOCKOUT_SECONDS);
      // Other users are not affected by one username's lockout.
      await login('admin', adminPassword).expect(200);

      const lockouts = await data.getRepository(AuditLogEntity).findBy({ action: 'auth.lockout' });
      expect(lockouts).toEqual([expect.objectContaining({ target: 'bruteforced', detail: expect.objectContaining({ scope: 'username', seconds: LOCKOUT_SECONDS }) })]);
      const failures = await data.getRepository(AuditLogEntity).findBy({ action: 'auth.login.failed', username: 'bruteforced' });
      expect(failures).toHaveLength(4);
      expect(failures[0].detail).toMatchObject({ reason: 'wrong-password', address: expect.stringMatching(/127\.0\.0\.1/) });

      await new Promise((r) => setTimeout(r, LOCKOUT_SECONDS * 1000 + 100));
      await login('bruteforced', 'right-password').expect(200);
    });
  });

  describe('HTTP hardening', () => {
    it('sends security headers, no framework fingerprint and no-store on token responses', async () => {
      const health = await api().get('/api/health').expect(200);
      expect(health.headers['x-powered-by']).toBeUndefined();
      expect(health.headers).toMatchObject({
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
      });
      const loggedIn = await login('admin', adminPassword).expect(200);
      expect(loggedIn.headers['cache-control']).toBe('no-store');
      const token = await api().post('/api/auth/tokens').set(auth(adminToken)).send({ name: 'headers' }).expect(201);
      expect(token.headers['cache-control']).toBe('no-store');
      const denied = await api().get('/api/hosts').expect(401);
      expect(denied.headers['x-content-type-options']).toBe('nosniff');
      expect(denied.headers['x-powered-by']).toBeUndefined();
    });

    it('accepts only JSON bodies on writes (415) and refuses bodies over the limit (413) and broken JSON (400)', async () => {
      const form = await api().post('/api/auth/login').type('form').send('username=admin&password=x').expect(415);
      expect(form.body).toMatchObject({ statusCode: 415, message: expect.stringMatching(/application\/json/) });
      await api().post('/api/auth/login').set('Content-Type', 'text/plain').send('{"username":"admin","password":"x"}').expect(415);
      const big = await api().post('/api/auth/tokens').set(auth(adminToken)).send({ name: 'x'.repeat(20 * 1024) }).expect(413);
      expect(big.body).toMatchObject({ statusCode: 413, message: expect.stringMatching(/exceeds the limit of 16384 bytes/) });
      const broken = await api().post('/api/auth/login').set('Content-Type', 'application/json').send('{"username":').expect(400);
      expect(broken.body).toEqual({ statusCode: 400, error: 'Bad Request', message: 'request body is not valid JSON' });
      expect(broken.text).not.toMatch(/at \w+ \(/);
      // Writes without a body need no content type.
      await api().post('/api/auth/logout').set(auth((await login('admin', adminPassword).expect(200)).body.token as string)).expect(204);
    });

    it('allows CORS only for the configured origins', async () => {
      const allowed = await api().options('/api/hosts').set('Origin', 'https://ui.example').set('Access-Control-Request-Method', 'POST').expect(204);
      expect(allowed.headers['access-control-allow-origin']).toBe('https://ui.example');
      const other = await api().get('/api/health').set('Origin', 'https://evil.example').expect(200);
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    });
  });

  describe('input validation at the edge', () => {
    it('answers 400 naming the id parameter that is not a UUID', async () => {
      for (const route of ['/api/hosts/1', '/api/jobs/abc', '/api/restore-points/x/disks/disk-2000/raw', '/api/users/nope/tokens', '/api/vms/1%27%20OR%201=1']) {
        const res = await api().get(route).set(auth(adminToken));
        expect({ route, status: res.status, message: res.body.message }).toEqual({ route, status: 400, message: 'route parameter id must be a UUID' });
      }
      const res = await api().delete(`/api/users/${randomUUID()}/tokens/zzz`).set(auth(adminToken)).expect(400);
      expect(res.body.message).toBe('route parameter tokenId must be a UUID');
    });

    it('bounds pagination', async () => {
      await api().get('/api/jobs?pageSize=100000').set(auth(adminToken)).expect(400);
      await api().get('/api/jobs?page=0').set(auth(adminToken)).expect(400);
      await api().get('/api/audit?limit=1000000').set(auth(adminToken)).expect(400);
      await api().get('/api/jobs?page=2&pageSize=10').set(auth(adminToken)).expect(200);
    });
  });

  describe('token hygiene', () => {
    let userId: string;
    beforeAll(async () => {
      userId = await createUser('hygiene', 'first-password');
    });

    it('lets admins list and revoke any user\'s API tokens', async () => {
      const own = (await login('hygiene', 'first-password').expect(200)).body.token as string;
      const created = await api().post('/api/auth/tokens').set(auth(own)).send({ name: 'laptop' }).expect(201);
      const list = await api().get(`/api/users/${userId}/tokens`).set(auth(adminToken)).expect(200);
      expect(list.body).toEqual([expect.objectContaining({ id: created.body.id, name: 'laptop' })]);
      expect(JSON.stringify(list.body)).not.toContain(created.body.token);
      expect(list.body[0].tokenHash).toBeUndefined();
      await api().get(`/api/users/${userId}/tokens`).set(auth(own)).expect(403);
      await api().delete(`/api/users/${userId}/tokens/${created.body.id}`).set(auth(adminToken)).expect(204);
      await api().get('/api/auth/me').set(auth(created.body.token)).expect(401);
      await api().delete(`/api/users/${userId}/tokens/${created.body.id}`).set(auth(adminToken)).expect(404);
      await api().get(`/api/users/${randomUUID()}/tokens`).set(auth(adminToken)).expect(404);
    });

    it('ends the other sessions when a user changes its own password', async () => {
      const a = (await login('hygiene', 'first-password').expect(200)).body.token as string;
      const b = (await login('hygiene', 'first-password').expect(200)).body.token as string;
      await api().post('/api/auth/password').set(auth(a)).send({ currentPassword: 'not-it', newPassword: 'second-password' }).expect(403);
      await api().post('/api/auth/password').set(auth(a)).send({ currentPassword: 'first-password', newPassword: 'short' }).expect(400);
      const changed = await api().post('/api/auth/password').set(auth(a)).send({ currentPassword: 'first-password', newPassword: 'second-password' }).expect(200);
      expect(changed.body.sessionsRevoked).toBeGreaterThanOrEqual(1);
      await api().get('/api/auth/me').set(auth(a)).expect(200);
      await api().get('/api/auth/me').set(auth(b)).expect(401);
      await login('hygiene', 'first-password').expect(401);
      await login('hygiene', 'second-password').expect(200);
    });

    it('ends all sessions on an admin password reset, on disabling and on deletion', async () => {
      const s1 = (await login('hygiene', 'second-password').expect(200)).body.token as string;
      const reset = await api().put(`/api/users/${userId}/password`).set(auth(adminToken)).send({ password: 'third-password' }).expect(200);
      expect(reset.body.sessionsRevoked).toBeGreaterThanOrEqual(1);
      await api().get('/api/auth/me').set(auth(s1)).expect(401);

      const s2 = (await login('hygiene', 'third-password').expect(200)).body.token as string;
      const apiToken = (await api().post('/api/auth/tokens').set(auth(s2)).send({ name: 'kept' }).expect(201)).body.token as string;
      const disabled = await api().patch(`/api/users/${userId}`).set(auth(adminToken)).send({ disabled: true }).expect(200);
      expect(disabled.body).toMatchObject({ username: 'hygiene', disabled: true });
      await api().get('/api/auth/me').set(auth(s2)).expect(401);
      await api().get('/api/auth/me').set(auth(apiToken)).expect(401);
      expect(await data.getRepository(ApiTokenEntity).countBy({ userId, kind: 'session' })).toBe(0);
      await login('hygiene', 'third-password').expect(401);

      await api().patch(`/api/users/${userId}`).set(auth(adminToken)).send({ disabled: false }).expect(200);
      await api().get('/api/auth/me').set(auth(apiToken)).expect(200);
      await login('hygiene', 'third-password').expect(200);
      await api().delete(`/api/users/${userId}`).set(auth(adminToken)).expect(204);
      expect(await data.getRepository(ApiTokenEntity).countBy({ userId })).toBe(0);
      await api().get('/api/auth/me').set(auth(apiToken)).expect(401);
    });

    it('keeps the last enabled admin and refuses disabling oneself', async () => {
      const me = (await api().get('/api/auth/me').set(auth(adminToken)).expect(200)).body.id as string;
      const self = await api().patch(`/api/users/${me}`).set(auth(adminToken)).send({ disabled: true }).expect(409);
      expect(self.body.message).toMatch(/own user/);
      await api().patch(`/api/users/${me}`).set(auth(adminToken)).send({ role: 'viewer' }).expect(409);
      await api().patch(`/api/users/${me}`).set(auth(adminToken)).send({ disabled: 'yes' }).expect(400);
    });
  });
});

