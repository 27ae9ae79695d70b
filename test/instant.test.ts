// Instant restore through the real appliance (compiled API + worker, Redis, SQLite) and vcsim, as a user does it:
// back up a VM whose disk is bootable, start a writable session with `vmkeep restore instant`, boot qemu from the
// printed nbd:// URL, list sessions (viewers get no URL), and close with "migrate to production" to a file or
// onto vcsim's datastore. Sessions outlive an API crash as "lost" rows (scratch overlays removed at start), and a
// queued restore job that is cancelled leaves the BullMQ queue.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { RESTORE_QUEUE } from '@vmkeep/contracts';
import { startAppliance, vmkeep, type Appliance } from './peers/appliance';
import { freePort, makeTempDir, requireBinary } from './peers/process';
import { flushRedisDb } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';
import { bootAndWaitForMarker, bootSector } from './peers/boot-sector';

const execFileP = promisify(execFile);
const REDIS_DB = 9;
const MiB = 1024 * 1024;
const MARKER = 'VMKEEP-E2E-INSTANT';


interface SessionView {
  id: string;
  pointId: string;
  diskKey: string;
  writable: boolean;
  url: string | null;
  overlayBytes: number;
  state: string;
  endReason: string | null;
}

let work: string;
let home: string;
let vcsim: VcsimInstance;
let app: Appliance;
let image: Buffer;
let nbdPort: number;
let pointId: string;
let redisUrl: string;

const cli = (args: string[], extra: { env?: Record<string, string>; input?: string } = {}) =>
  vmkeep(args, { home, env: { VMKEEP_URL: app.url, ...extra.env }, input: extra.input });

beforeAll(async () => {
  for (const bin of ['qemu-system-x86_64', 'qemu-io', 'qemu-img', 'nbdinfo']) requireBinary(bin);
  work = makeTempDir('vmkeep-instant-e2e-');
  home = path.join(work, 'home');
  fs.mkdirSync(home);
  image = Buffer.alloc(4 * MiB);
  bootSector(MARKER).copy(image, 0);
  for (let i = MiB; i < 2 * MiB; i++) image[i] = (i * 7) & 0xff;
  const imageFile = path.join(work, 'boot.img');
  fs.writeFileSync(imageFile, image);
  vcsim = await startVcsim({ seed: [{ name: 'instant-vm', disks: [{ image: imageFile }] }] });
  redisUrl = `${process.env.TEST_REDIS_URL!.replace(/\/\d*$/, '')}/${REDIS_DB}`;
  await flushRedisDb(redisUrl, REDIS_DB);
  nbdPort = await freePort();
  app = await startAppliance({ redisUrl: process.env.TEST_REDIS_URL!, redisDb: REDIS_DB, env: { VMKEEP_NBD_HOST: '127.0.0.1', VMKEEP_NBD_PORT: String(nbdPort) } });
  const login = await cli(['login', '--username', 'admin', '--password-stdin'], { input: `${app.adminPassword}\n` });
  expect(login.code).toBe(0);
  const add = await cli(
    ['host', 'add', 'lab', '--url', vcsim.url, '--username', vcsim.username, '--password-stdin', '--thumbprint', vcsim.thumbprint],
    { input: vcsim.password },
  );
  expect(add.code).toBe(0);
  expect((await cli(['host', 'sync', 'lab'])).code).toBe(0);
});

afterAll(async () => {
  await app?.stop();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('instant restore through the API and CLI', () => {
  it('boots a backed-up VM from `vmkeep restore instant`, lists it, and migrates it to production on close', async () => {
    const backup = await cli(['backup', 'run', 'instant-vm', '--wait']);
    expect(backup.code).toBe(0);
    pointId = /restore point ([0-9a-f-]{36})/.exec(backup.stdout)![1];

    const start = await cli(['restore', 'instant', pointId, '--writable', '--hydrate']);
    expect(start).toMatchObject({ code: 0, stderr: '' });
    const url = start.stdout.split('\n')[0];
    expect(url).toMatch(new RegExp(`^nbd://127\\.0\\.0\\.1:${nbdPort}/[A-Za-z0-9_-]{32}$`));
    const sessionId = /session ([0-9a-f-]{36})/.exec(start.stdout)![1];

    const serial = await bootAndWaitForMarker(url, MARKER);
    expect(serial).toContain(MARKER);
    await execFileP('qemu-io', ['-f', 'raw', '-c', `write -P 0x66 ${3 * MiB} 65536`, url]);

    // --hydrate: the whole point ends up in the session's scratch cache, decoded once, while the VM runs.
    let cache: { hydration: string; dataBlocks: number; cachedBlocks: number } | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      cache = (JSON.parse((await cli(['restore', 'instant-list', '--json'])).stdout) as (SessionView & { cache?: typeof cache })[])[0].cache;
      if (cache?.hydration === 'done') break;
    }
    expect(cache).toMatchObject({ hydration: 'done', cachedBlocks: cache!.dataBlocks });
    expect(cache!.dataBlocks).toBeGreaterThan(0);

    const list = JSON.parse((await cli(['restore', 'instant-list', '--json'])).stdout) as SessionView[];
    expect(list).toEqual([expect.objectContaining({ id: sessionId, pointId, diskKey: 'disk-2000', writable: true, url })]);
    expect(list[0].overlayBytes).toBeGreaterThanOrEqual(65536);
    const table = await cli(['restore', 'instant-list']);
    expect(table.stdout).toMatch(new RegExp(`^${sessionId}\\s+${pointId}\\s+disk-2000\\s+rw\\s+`, 'm'));

    // A viewer sees the session but not its access token; an operator role is needed to start or close one.
    await app.api('POST', '/api/users', { username: 'watcher', password: 'watcher-password-1', role: 'viewer' });
    const viewerToken = (await app.api<{ token: string }>('POST', '/api/auth/login', { username: 'watcher', password: 'watcher-password-1' })).token;
    const asViewer = (method: string, route: string, body?: unknown) =>
      fetch(app.url + route, {
        method,
        headers: { authorization: `Bearer ${viewerToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const seen = (await (await asViewer('GET', '/api/instant-sessions')).json()) as SessionView[];
    expect(seen).toEqual([expect.objectContaining({ id: sessionId, url: null })]);
    expect((await asViewer('POST', '/api/instant-sessions', { pointId })).status).toBe(403);
    expect((await asViewer('DELETE', `/api/instant-sessions/${sessionId}`)).status).toBe(403);

    // Bad input is refused with the server's message.
    const badDisk = await cli(['restore', 'instant', pointId, '--disk', 'disk-9']);
    expect(badDisk.code).toBe(1);
    expect(badDisk.stderr).toMatch(/has no disk "disk-9".*HTTP 404/);
    const badName = await app.fetch('DELETE', `/api/instant-sessions/${sessionId}`, { migrateTo: '../escape.raw' });
    expect(badName.status).toBe(400);

    const close = await cli(['restore', 'instant-close', sessionId, '--migrate-to', 'instant-vm.raw', '--format', 'raw']);
    expect(close).toMatchObject({ code: 0, stderr: '' });
    const migrated = path.join(app.dataDir, 'migrated', 'instant-vm.raw');
    expect(close.stdout).toContain(migrated);
    const expected = Buffer.from(image);
    expected.fill(0x66, 3 * MiB, 3 * MiB + 65536);
    const merged = fs.readFileSync(migrated);
    // The guest may have written too (BIOS/boot); compare everything but the boot sector's neighbourhood.
    expect(merged.length).toBe(expected.length);
    expect(merged.subarray(MiB).equals(expected.subarray(MiB))).toBe(true);
    expect(merged.subarray(0, 512).equals(expected.subarray(0, 512))).toBe(true);

    // The session is gone, its URL no longer answers, and the backup itself is unchanged.
    expect(JSON.parse((await cli(['restore', 'sessions', '--json'])).stdout)).toEqual([]);
    await expect(execFileP('nbdinfo', ['--json', url])).rejects.toBeDefined();
    const download = await app.fetch('GET', `/api/restore-points/${pointId}/disks/disk-2000/raw`);
    expect(Buffer.from(await download.arrayBuffer()).equals(image)).toBe(true);
    const again = await cli(['restore', 'instant-close', sessionId]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not found.*HTTP 404/);
  });
});

describe('migrate to production onto a datastore', () => {
  const start = (body: Record<string, unknown>) => app.api<SessionView & { url: string }>('POST', '/api/instant-sessions', { pointId, ...body });

  it('uploads the merged disk (with a write made through NBD) as vmfs descriptor + flat; a collision keeps the session', async () => {
    const ds = vcsim.datastores[0];
    const session = await start({ writable: true });
    await execFileP('qemu-io', ['-f', 'raw', '-c', `write -P 0x77 ${MiB + 4096} 65536`, '-c', 'flush', session.url]);
    const expected = Buffer.from(image);
    expected.fill(0x77, MiB + 4096, MiB + 4096 + 65536);

    const close = await cli(['restore', 'instant-close', session.id, '--datastore', ds.name, '--host', 'lab', '--folder', 'instant-migrated', '--json']);
    expect(close).toMatchObject({ code: 0 });
    expect(JSON.parse(close.stdout)).toEqual({
      id: session.id,
      migrated: { path: `[${ds.name}] instant-migrated/instant-migrated.vmdk`, format: 'vmfs', bytes: image.length },
    });
    const flat = fs.readFileSync(path.join(ds.path, 'instant-migrated', 'instant-migrated-flat.vmdk'));
    expect(flat.equals(expected)).toBe(true);
    const descriptor = fs.readFileSync(path.join(ds.path, 'instant-migrated', 'instant-migrated.vmdk'), 'utf8');
    expect(descriptor).toContain(`RW ${image.length / 512} VMFS "instant-migrated-flat.vmdk"`);
    expect(await app.api<SessionView>('GET', `/api/instant-sessions/${session.id}`)).toMatchObject({ state: 'closed', url: null });

    // The same folder again: refused before any data moves; the session, its URL and its writes stay.
    const again = await start({ writable: true });
    await execFileP('qemu-io', ['-f', 'raw', '-c', `write -P 0x78 0 4096`, again.url]);
    const clash = await app.fetch('DELETE', `/api/instant-sessions/${again.id}`, {
      datastore: { hostId: await hostId(), datastore: ds.name, folder: 'instant-migrated' },
    });
    expect(clash.status).toBe(409);
    expect(((await clash.json()) as { message: string }).message).toMatch(/already exists/);
    const unknown = await app.fetch('DELETE', `/api/instant-sessions/${again.id}`, { datastore: { hostId: await hostId(), datastore: 'nope', folder: 'x' } });
    expect(unknown.status).toBe(400);
    expect(fs.readFileSync(path.join(ds.path, 'instant-migrated', 'instant-migrated-flat.vmdk')).equals(expected)).toBe(true);
    const { stdout } = await execFileP('qemu-io', ['-f', 'raw', '-c', 'read -P 0x78 0 4096', again.url]);
    expect(stdout).toMatch(/read 4096\/4096 bytes/);
    // The spelling: `restore close ID --keep OUT`.
    const kept = await cli(['restore', 'close', again.id, '--keep', 'kept.raw']);
    expect(kept).toMatchObject({ code: 0, stderr: '' });
    const keptDisk = fs.readFileSync(path.join(app.dataDir, 'migrated', 'kept.raw'));
    expect(keptDisk.subarray(0, 4096).equals(Buffer.alloc(4096, 0x78))).toBe(true);
    expect(keptDisk.subarray(4096).equals(image.subarray(4096))).toBe(true);
  });

  async function hostId(): Promise<string> {
    return (await app.api<Array<{ id: string; name: string }>>('GET', '/api/hosts')).find((h) => h.name === 'lab')!.id;
  }
});

describe('sessions and an API crash', () => {
  it('lists the sessions of a crashed API as "lost" until they expire and removes their overlays at start', async () => {
    const session = await app.api<SessionView & { url: string }>('POST', '/api/instant-sessions', { pointId, writable: true, ttlMinutes: 30 });
    await execFileP('qemu-io', ['-f', 'raw', '-c', `write -P 0x11 0 4096`, session.url]);
    const scratch = path.join(app.dataDir, 'instant', session.id);
    expect(fs.existsSync(scratch)).toBe(true);
    fs.mkdirSync(path.join(app.dataDir, 'instant', 'left-over-by-a-crash'));

    await app.restartApi('SIGKILL');
    const list = await app.api<SessionView[]>('GET', '/api/instant-sessions');
    expect(list).toEqual([expect.objectContaining({ id: session.id, state: 'lost', url: null, clients: 0, writable: true })]);
    expect(list[0].endReason).toMatch(/stopped/);
    expect(fs.readdirSync(path.join(app.dataDir, 'instant'))).toEqual([]);
    await expect(execFileP('nbdinfo', ['--json', session.url])).rejects.toBeDefined();

    // Nothing to migrate; dismissing it ends the listing.
    const migrate = await app.fetch('DELETE', `/api/instant-sessions/${session.id}`, { migrateTo: 'lost.raw' });
    expect(migrate.status).toBe(409);
    expect((await app.fetch('DELETE', `/api/instant-sessions/${session.id}`, {})).status).toBe(200);
    expect(await app.api('GET', '/api/instant-sessions')).toEqual([]);

    // A lost session whose lifetime has ended is no longer listed.
    const other = await app.api<SessionView>('POST', '/api/instant-sessions', { pointId, ttlMinutes: 30 });
    await app.restartApi('SIGKILL');
    expect((await app.api<SessionView[]>('GET', '/api/instant-sessions')).map((s) => [s.id, s.state])).toEqual([[other.id, 'lost']]);
    const db = new DataSource({ type: 'better-sqlite3', database: path.join(app.dataDir, 'vmkeep.sqlite') });
    await db.initialize();
    try {
      await db.query('UPDATE instant_sessions SET expiresAt = ? WHERE id = ?', ['2000-01-01 00:00:00.000', other.id]);
    } finally {
      await db.destroy();
    }
    expect(await app.api('GET', '/api/instant-sessions')).toEqual([]);
  });
});

describe('cancelling a queued restore job', () => {
  it('takes it off the BullMQ queue, not only marks it', async () => {
    const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue(RESTORE_QUEUE, { connection });
    await queue.pause(); // no worker takes it while we look
    try {
      const job = await app.api<{ id: string; state: string }>('POST', `/api/restore-points/${pointId}/restore-vm`, { name: 'never-restored' });
      expect(job.state).toBe('queued');
      expect(await queue.getJob(job.id)).toBeDefined();
      const cancelled = await app.api<{ state: string; phase: string }>('POST', `/api/jobs/${job.id}/cancel`);
      expect(cancelled).toMatchObject({ state: 'cancelled', phase: 'cancelled before start' });
      expect(await queue.getJob(job.id)).toBeUndefined();
      expect(await queue.getJobCounts('waiting', 'wait', 'active')).toEqual({ waiting: 0, wait: 0, active: 0 });
    } finally {
      await queue.resume();
      await queue.close();
      connection.disconnect();
    }
  });
});
