// Instant restore through the real appliance (compiled API + worker, Redis, SQLite) and vcsim, as a user does it:
// back up a VM whose disk is bootable, start a writable session with `vmkeep restore instant`, boot qemu from the
// printed nbd:// URL, list sessions (viewers get no URL), and close with "migrate to production".
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { startAppliance, vmkeep, type Appliance } from './peers/appliance';
import { freePort, makeTempDir, requireBinary } from './peers/process';
import { startVcsim, type VcsimInstance } from './peers/vcsim';
import { bootSector } from './peers/boot-sector';

const execFileP = promisify(execFile);
const REDIS_DB = 9;
const MiB = 1024 * 1024;
const MARKER = 'VMKEEP-E2E-INSTANT';


/** Boots qemu from an NBD URL until MARKER shows on its serial console; resolves with the console text. */
async function bootAndWaitForMarker(url: string): Promise<string> {
  const child = spawn(
    requireBinary('qemu-system-x86_64'),
    ['-machine', 'pc,accel=tcg', '-m', '32', '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
      '-drive', `file=${url},format=raw,if=ide`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let serial = '';
  let errors = '';
  child.stdout.on('data', (d: Buffer) => (serial += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (errors += d.toString('latin1')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + 60_000;
    while (!serial.includes(MARKER) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (!serial.includes(MARKER)) throw new Error(`no marker; serial: ${JSON.stringify(serial.slice(-200))}; qemu: ${errors.slice(-500)}`);
    return serial;
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  }
}

interface SessionView {
  id: string;
  pointId: string;
  diskKey: string;
  writable: boolean;
  url: string | null;
  overlayBytes: number;
}

let work: string;
let home: string;
let vcsim: VcsimInstance;
let app: Appliance;
let image: Buffer;
let nbdPort: number;

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
  const redisUrl = process.env.TEST_REDIS_URL!;
  const redis = new Redis(`${redisUrl.replace(/\/\d*$/, '')}/${REDIS_DB}`);
  await redis.flushdb();
  redis.disconnect();
  nbdPort = await freePort();
  app = await startAppliance({ redisUrl, redisDb: REDIS_DB, env: { VMKEEP_NBD_HOST: '127.0.0.1', VMKEEP_NBD_PORT: String(nbdPort) } });
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
    const pointId = /restore point ([0-9a-f-]{36})/.exec(backup.stdout)![1];

    const start = await cli(['restore', 'instant', pointId, '--writable']);
    expect(start).toMatchObject({ code: 0, stderr: '' });
    const url = start.stdout.split('\n')[0];
    expect(url).toMatch(new RegExp(`^nbd://127\\.0\\.0\\.1:${nbdPort}/[A-Za-z0-9_-]{32}$`));
    const sessionId = /session ([0-9a-f-]{36})/.exec(start.stdout)![1];

    const serial = await bootAndWaitForMarker(url);
    expect(serial).toContain(MARKER);
    await execFileP('qemu-io', ['-f', 'raw', '-c', `write -P 0x66 ${3 * MiB} 65536`, url]);

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
