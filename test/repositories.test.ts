// Repositories as appliance resources, through the real appliance (API + worker processes, SQLite, Redis, vcsim):
// the default repository is created encrypted from VMKEEP_REPOSITORY_PASSPHRASE; admins create more (encrypted
// or not) and back a vcsim VM up into one by id; its disk downloads byte-exact and no chunk file holds the
// plaintext marker the disk is full of (while the unencrypted control repository does). Disaster recovery: a
// brand-new appliance (fresh data dir, empty SQLite) refuses the wrong passphrase with 400 and imports nothing,
// then attaches the repository with the right one (`vmkeep repositories attach --passphrase-stdin`), lists its
// points (VM as a detached inventory entry) and downloads the disk byte-exact. No passphrase ever appears in an
// API response, the CLI output, the audit log or the processes' output.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { addVcsimHost, itemsOf, runBackup, startAppliance, vmIdByName, vmkeep, type Appliance } from './peers/appliance';
import { seededBytes, sha256File } from './peers/disk-images';
import { flushRedisDb } from './peers/redis';
import { startS3, type S3Peer } from './peers/s3';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const REDIS_DB = 15;
const VM_NAME = 'repo-vm';
const MiB = 1024 * 1024;
const MARKER = 'VMKEEP-PLAINTEXT-MARKER-5d1c9e';
const DEFAULT_PASSPHRASE = 'default passphrase 8c2f61';
const OFFSITE_PASSPHRASE = 'offsite passphrase 40e7ab';

interface RepositoryRow {
  id: string;
  name: string;
  location: string;
  kind: string;
  encrypted: boolean;
  isDefault: boolean;
  pointCount: number;
  storedBytes: number;
}
interface PointRow {
  id: string;
  vmId: string;
  vmName: string | null;
  repositoryId: string | null;
  disks: { key: string; deviceKey: number; capacityBytes: number }[];
}

let work: string;
let vcsim: VcsimInstance;
let s3: S3Peer | undefined;
let app: Appliance | undefined;
let fresh: Appliance | undefined;
let imageSha: string;
let offsiteDir: string;
let plainDir: string;
/** Every response body the tests saw, searched for passphrases at the end. */
const seen: string[] = [];

/**
 * A 6 MiB disk: 4 MiB of random data with MARKER every 64 KiB (random so that zstd stores it as raw literals and
 * the marker stays readable in an unencrypted repository), then random data and zeros.
 */
function markerImage(file: string): void {
  const segment = 64 * 1024;
  const parts: Buffer[] = [];
  for (let i = 0; i < (4 * MiB) / segment; i++) {
    const mark = Buffer.from(MARKER);
    parts.push(seededBytes('repositories', `segment-${i}`, segment - mark.length), mark);
  }
  parts.push(seededBytes('repositories', 'tail', MiB), Buffer.alloc(MiB));
  fs.writeFileSync(file, Buffer.concat(parts));
}

async function call<T>(a: Appliance, method: string, route: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await a.fetch(method, route, body);
  const text = await res.text();
  seen.push(text);
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function download(a: Appliance, route: string, file: string): Promise<string> {
  const res = await a.fetch('GET', route);
  if (!res.ok || !res.body) throw new Error(`GET ${route} → HTTP ${res.status}: ${await res.text()}`);
  await pipeline(Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]), fs.createWriteStream(file));
  return sha256File(file);
}

/** Files below `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else if (fs.readFileSync(full).includes(needle)) hits.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return hits;
}

async function backUp(a: Appliance, repositoryId?: string): Promise<PointRow> {
  const done = await runBackup(a, await vmIdByName(a, VM_NAME), repositoryId ? { repositoryId } : {});
  expect(done).toMatchObject({ state: 'succeeded' });
  return (await call<PointRow>(a, 'GET', `/api/restore-points/${done.restorePointId}`)).body;
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-repositories-test-'));
  const image = path.join(work, 'disk.raw');
  markerImage(image);
  imageSha = await sha256File(image);
  offsiteDir = path.join(work, 'offsite');
  plainDir = path.join(work, 'plain');
  vcsim = await startVcsim({ seed: [{ name: VM_NAME, disks: [{ image }] }] });
  const redisUrl = process.env.TEST_REDIS_URL!;
  await flushRedisDb(redisUrl, REDIS_DB);
  app = await startAppliance({ redisUrl, redisDb: REDIS_DB, env: { VMKEEP_REPOSITORY_PASSPHRASE: DEFAULT_PASSPHRASE } });
  await addVcsimHost(app, vcsim);
}, 240_000);

afterAll(async () => {
  await app?.stop();
  await fresh?.stop();
  await vcsim?.stop();
  await s3?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('repositories on the appliance', () => {
  let offsite: RepositoryRow;

  it('creates the default repository encrypted from VMKEEP_REPOSITORY_PASSPHRASE and backs up into it by default', async () => {
    const { body: list } = await call<RepositoryRow[]>(app!, 'GET', '/api/repositories');
    expect(list).toEqual([
      expect.objectContaining({ name: 'default', location: app!.repositoryPath, kind: 'folder', encrypted: true, isDefault: true, pointCount: 0 }),
    ]);
    const point = await backUp(app!);
    expect(point.repositoryId).toBe(list[0].id);
    expect(await download(app!, `/api/restore-points/${point.id}/disks/${point.disks[0].key}/raw`, path.join(work, 'default.raw'))).toBe(imageSha);
    expect(filesContaining(app!.repositoryPath, MARKER)).toEqual([]);
    const { body: after } = await call<RepositoryRow>(app!, 'GET', `/api/repositories/${list[0].id}`);
    expect(after).toMatchObject({ pointCount: 1 });
    expect(after.storedBytes).toBeGreaterThan(0);
  }, 120_000);

  it('creates an encrypted repository, backs up into it by id, downloads byte-exact; chunks hold no plaintext', async () => {
    const created = await call<RepositoryRow>(app!, 'POST', '/api/repositories', { name: 'offsite', location: offsiteDir, passphrase: OFFSITE_PASSPHRASE });
    expect(created.status).toBe(201);
    offsite = created.body;
    expect(offsite).toMatchObject({ name: 'offsite', location: offsiteDir, encrypted: true, isDefault: false, pointCount: 0 });
    expect(Object.keys(offsite)).not.toContain('passphrase');

    const point = await backUp(app!, offsite.id);
    expect(point.repositoryId).toBe(offsite.id);
    expect(await download(app!, `/api/restore-points/${point.id}/disks/${point.disks[0].key}/raw`, path.join(work, 'offsite.raw'))).toBe(imageSha);
    expect(fs.readdirSync(path.join(offsiteDir, 'chunks')).length).toBeGreaterThan(0);
    expect(filesContaining(offsiteDir, MARKER)).toEqual([]);

    // Control: the same disk in an unencrypted repository does leave the marker readable in its chunks.
    const plain = (await call<RepositoryRow>(app!, 'POST', '/api/repositories', { name: 'plain', location: plainDir })).body;
    expect(plain).toMatchObject({ encrypted: false });
    // Through `vmkeep backup run --repository NAME`.
    const home = path.join(work, 'home');
    fs.mkdirSync(home, { recursive: true });
    const cli = await vmkeep(['backup', 'run', VM_NAME, '--repository', 'plain', '--wait', '--json'], { home, env: { VMKEEP_URL: app!.url, VMKEEP_TOKEN: app!.token } });
    expect(cli).toMatchObject({ code: 0 });
    const job = JSON.parse(cli.stdout) as { state: string; restorePointId: string };
    expect((await call<PointRow>(app!, 'GET', `/api/restore-points/${job.restorePointId}`)).body.repositoryId).toBe(plain.id);
    expect(filesContaining(path.join(plainDir, 'chunks'), MARKER).length).toBeGreaterThan(0);
  }, 180_000);

  it('creates an encrypted repository on S3-compatible storage and backs up into it and restores from it', async () => {
    s3 = await startS3(['vmkeep-repos']);
    const created = await call<RepositoryRow & { s3: Record<string, unknown> }>(app!, 'POST', '/api/repositories', {
      name: 'bucket',
      location: 's3://vmkeep-repos/appliance',
      passphrase: OFFSITE_PASSPHRASE,
      s3: { endpoint: s3.endpoint, region: s3.region, ...s3.credentials },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ kind: 's3', encrypted: true, s3: { endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.credentials.accessKeyId } });
    expect(created.body.s3).not.toHaveProperty('secretAccessKey');
    const point = await backUp(app!, created.body.id);
    expect(point.repositoryId).toBe(created.body.id);
    expect(await download(app!, `/api/restore-points/${point.id}/disks/${point.disks[0].key}/raw`, path.join(work, 's3.raw'))).toBe(imageSha);
  }, 120_000);

  it('validates input, refuses duplicates and non-empty folders, and never deletes a repository points or policies use', async () => {
    expect((await call(app!, 'POST', '/api/repositories', { name: 'x', location: 'relative/dir' })).status).toBe(400);
    expect((await call(app!, 'POST', '/api/repositories', { name: 'x', location: path.join(work, 'x'), passphrase: 'short' })).status).toBe(400);
    expect((await call(app!, 'POST', '/api/repositories', { name: 'x', location: 'ftp://host/x' })).status).toBe(400);
    expect((await call(app!, 'POST', '/api/repositories', { name: 'offsite', location: path.join(work, 'y') })).status).toBe(409);
    const nonEmpty = await call<{ message: string }>(app!, 'POST', '/api/repositories', { name: 'again', location: offsiteDir });
    expect(nonEmpty.status).toBe(409);
    const inUse = await call<{ message: string }>(app!, 'DELETE', `/api/repositories/${offsite.id}`);
    expect(inUse.status).toBe(409);
    expect(inUse.body.message).toMatch(/restore point/);
    const { body: list } = await call<RepositoryRow[]>(app!, 'GET', '/api/repositories');
    expect((await call(app!, 'DELETE', `/api/repositories/${list.find((r) => r.isDefault)!.id}`)).status).toBe(409);
    const spare = (await call<RepositoryRow>(app!, 'POST', '/api/repositories', { name: 'spare', location: path.join(work, 'spare') })).body;
    // A policy writes to a repository by id; an unknown id is refused, a used repository cannot be removed.
    const policy = { name: 'to-spare', schedule: { daily: '03:00' }, selection: { namePatterns: ['nothing-*'] } };
    const unknown = await call<{ message: string }>(app!, 'POST', '/api/policies', { ...policy, repositoryId: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.message).toMatch(/repository .* not found/);
    const created = await call<{ id: string; repositoryId: string }>(app!, 'POST', '/api/policies', { ...policy, repositoryId: spare.id });
    expect(created).toMatchObject({ status: 201, body: { repositoryId: spare.id } });
    const byPolicy = await call<{ message: string }>(app!, 'DELETE', `/api/repositories/${spare.id}`);
    expect(byPolicy.status).toBe(409);
    expect(byPolicy.body.message).toMatch(/policy "to-spare"/);
    expect((await call(app!, 'DELETE', `/api/policies/${created.body.id}`)).status).toBe(204);
    expect((await call(app!, 'DELETE', `/api/repositories/${spare.id}`)).status).toBe(204);
    expect(fs.existsSync(path.join(work, 'spare', 'config.json'))).toBe(true); // data is never deleted
    expect((await call(app!, 'GET', `/api/repositories/${spare.id}`)).status).toBe(404);
  });

  it('lets operators read repositories but only admins change them', async () => {
    await app!.api('POST', '/api/users', { username: 'op', password: 'operator-password-1', role: 'operator' });
    const { token } = await app!.api<{ token: string }>('POST', '/api/auth/login', { username: 'op', password: 'operator-password-1' });
    const asOperator = (method: string, route: string, body?: unknown) =>
      fetch(app!.url + route, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    expect((await asOperator('GET', '/api/repositories')).status).toBe(200);
    expect((await asOperator('POST', '/api/repositories', { name: 'op', location: path.join(work, 'op') })).status).toBe(403);
    expect((await asOperator('POST', '/api/repositories/attach', { name: 'op', location: offsiteDir })).status).toBe(403);
  });

  it('disaster recovery: a brand-new appliance attaches the repository with its passphrase and restores from it', async () => {
    await app!.stop(); // the original appliance is gone; only the repository folder survives
    const logsBefore = app!.logs();
    app = undefined;
    expect(logsBefore).not.toContain(DEFAULT_PASSPHRASE);
    expect(logsBefore).not.toContain(OFFSITE_PASSPHRASE);

    fresh = await startAppliance({ redisUrl: process.env.TEST_REDIS_URL!, redisDb: REDIS_DB });
    const wrong = await call<{ message: string }>(fresh, 'POST', '/api/repositories/attach', { name: 'offsite', location: offsiteDir, passphrase: 'not the passphrase' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.message).toMatch(/wrong passphrase/);
    const missing = await call<{ message: string }>(fresh, 'POST', '/api/repositories/attach', { name: 'offsite', location: offsiteDir });
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/encrypted: give its passphrase/);
    expect((await call<RepositoryRow[]>(fresh, 'GET', '/api/repositories')).body.map((r) => r.name)).toEqual(['default']);
    expect(itemsOf((await call<PointRow[]>(fresh, 'GET', '/api/restore-points')).body)).toEqual([]);

    // Through the CLI, the passphrase on standard input.
    const home = path.join(work, 'home');
    fs.mkdirSync(home, { recursive: true });
    const cli = (args: string[], input?: string) =>
      vmkeep(args, { home, env: { VMKEEP_URL: fresh!.url, VMKEEP_TOKEN: fresh!.token }, ...(input !== undefined ? { input } : {}) });
    const attachedCli = await cli(['repositories', 'attach', 'offsite', '--location', offsiteDir, '--passphrase-stdin', '--json'], `${OFFSITE_PASSPHRASE}\n`);
    expect(attachedCli).toMatchObject({ code: 0 });
    seen.push(attachedCli.stdout, attachedCli.stderr);
    const attached = { body: JSON.parse(attachedCli.stdout) as { repository: RepositoryRow; imported: number; vmsCreated: number } };
    expect(attached.body).toMatchObject({ imported: 1, vmsCreated: 1, repository: { name: 'offsite', encrypted: true, pointCount: 1 } });
    const listed = await cli(['repositories', 'list']);
    const row = listed.stdout.split('\n').find((line) => line.includes(offsiteDir));
    expect(row?.trim().split(/\s+/)).toEqual(expect.arrayContaining(['offsite', offsiteDir, 'yes', '1']));

    const points = itemsOf((await call<PointRow[]>(fresh, 'GET', '/api/restore-points')).body);
    expect(points).toEqual([expect.objectContaining({ vmName: VM_NAME, repositoryId: attached.body.repository.id })]);
    const vms = itemsOf((await call<{ id: string; name: string; missing: boolean }[]>(fresh, 'GET', '/api/vms')).body);
    expect(vms).toEqual([expect.objectContaining({ id: points[0].vmId, name: VM_NAME })]);
    const disk = points[0].disks[0];
    expect(await download(fresh, `/api/restore-points/${points[0].id}/disks/${disk.key}/raw`, path.join(work, 'dr.raw'))).toBe(imageSha);

    // Attaching the same location twice is refused.
    expect((await call(fresh, 'POST', '/api/repositories/attach', { name: 'again', location: offsiteDir, passphrase: OFFSITE_PASSPHRASE })).status).toBe(409);
  }, 180_000);

  it('never shows a passphrase in API responses, the audit log or the processes\' output', async () => {
    seen.push(JSON.stringify(await fresh!.api('GET', '/api/audit')));
    const everything = seen.join('\n') + fresh!.logs();
    expect(everything).toContain('repository.attach');
    for (const secret of [DEFAULT_PASSPHRASE, OFFSITE_PASSPHRASE, 'not the passphrase']) expect(everything).not.toContain(secret);
  });
});
