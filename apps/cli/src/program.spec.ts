import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { CredentialStore } from './credentials';
import { runCli } from './program';
import { fakeApi, io } from './testing/fake-api';

/**
 * A stream that records every write into a log shared with other streams, in the order the bytes are taken. The
 * terminal kind takes each write a little later, like a busy terminal: later writes wait in the stream's buffer.
 */
function recorder(name: string, log: [string, string][], terminal = false): Writable & { isTTY?: boolean; columns?: number } {
  const stream: Writable & { isTTY?: boolean; columns?: number } = new Writable({
    write(chunk: Buffer, _enc, done) {
      log.push([name, chunk.toString()]);
      if (terminal) setTimeout(done, 2);
      else done();
    },
  });
  if (terminal) Object.assign(stream, { isTTY: true, columns: 120 });
  return stream;
}

describe('runCli', () => {
  let dir: string;
  let store: CredentialStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-spec-'));
    store = new CredentialStore(path.join(dir, 'credentials.json'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('logs in with --password-stdin and sends the saved token to that URL only', async () => {
    const api = await fakeApi((req) =>
      req.url === '/api/auth/login' ? { status: 201, json: { token: 'T0K' } } : { status: 200, json: [] },
    );
    try {
      const login = io('s3cret\n');
      expect(await runCli(['--url', api.url, 'login', '--password-stdin'], login.streams, store)).toBe(0);
      expect(JSON.parse(api.seen[0].body)).toEqual({ username: 'admin', password: 's3cret' });
      expect(login.out()).toContain(`logged in to ${api.url} as admin`);
      expect(store.tokenFor(api.url)).toBe('T0K');

      const list = io();
      expect(await runCli(['host', 'list', '--url', api.url, '--json'], list.streams, store)).toBe(0);
      expect(api.seen[1]).toMatchObject({ method: 'GET', url: '/api/hosts', auth: 'Bearer T0K' });
      expect(JSON.parse(list.out())).toEqual([]);
    } finally {
      await api.close();
    }
  });

  it('prints the server message of an HTTP error and exits 1', async () => {
    const api = await fakeApi(() => ({ status: 400, json: { statusCode: 400, message: ['url must be a URL'] } }));
    try {
      const run = io();
      const code = await runCli(
        ['--url', api.url, '--token', 't', 'host', 'add', 'x', '--url', 'nope', '--username', 'u', '--password', 'p'],
        run.streams,
        store,
      );
      expect(code).toBe(1);
      expect(run.err()).toBe('error: url must be a URL (HTTP 400)\n');
    } finally {
      await api.close();
    }
  });

  it('says when the server cannot be reached', async () => {
    const api = await fakeApi(() => ({ status: 200 }));
    const url = api.url;
    await api.close();
    const run = io();
    expect(await runCli(['--url', url, '--token', 't', 'vm', 'list'], run.streams, store)).toBe(1);
    expect(run.err()).toMatch(new RegExp(`^error: cannot reach VMKeep at ${url}: .*ECONNREFUSED`));
  });

  it('refuses a short download and leaves no output file', async () => {
    const point = { id: 'p1', vmId: 'v', createdAt: '', sizeBytes: 10, storedBytes: 1, disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'd', capacityBytes: 10 }] };
    const api = await fakeApi((req) =>
      req.url === '/api/restore-points/p1' ? { status: 200, json: point } : { status: 200, raw: Buffer.alloc(4) },
    );
    try {
      const run = io();
      const output = path.join(dir, 'out.raw');
      const code = await runCli(
        ['--url', api.url, '--token', 't', 'restore', 'disk', 'p1', '--disk', 'disk-2000', '--output', output],
        run.streams,
        store,
      );
      expect(code).toBe(1);
      expect(run.err()).toBe('error: the server offers 4 bytes but the disk has 10\n');
      expect(fs.existsSync(output)).toBe(false);
      expect(fs.existsSync(`${output}.part`)).toBe(false);
    } finally {
      await api.close();
    }
  });

  it('lists VMs with their disk count and size, and points with their VM name; tables end with a newline', async () => {
    const vms = [
      { id: 'v1', hostId: 'h', name: 'web', moref: 'vm-1', powerState: 'poweredOn', diskCount: 2, capacityBytes: 8 * 1024 ** 2 },
      { id: 'v2', hostId: 'h', name: 'db', moref: 'vm-2', powerState: null, missing: true, diskCount: 0, capacityBytes: 0 },
    ];
    const disk = { key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 10 };
    const points = [
      { id: 'p1', vmId: 'v1', vmName: 'web', createdAt: '2026-01-02T03:04:05Z', sizeBytes: 10, storedBytes: 1536, disks: [disk] },
      { id: 'p0', vmId: 'v9', vmName: null, createdAt: '2026-01-01T00:00:00Z', sizeBytes: 10, storedBytes: 0, disks: [disk] },
    ];
    const api = await fakeApi((req) => ({ status: 200, json: req.url === '/api/vms' ? vms : points }));
    try {
      const vmList = io();
      expect(await runCli(['--url', api.url, '--token', 't', 'vm', 'list'], vmList.streams, store)).toBe(0);
      expect(vmList.out().split('\n')).toEqual([
        'ID  NAME          MOREF  POWER      DISKS  SIZE',
        'v1  web           vm-1   poweredOn  2      8.0 MiB',
        'v2  db (missing)  vm-2              0      0 B',
        '',
      ]);

      const pointList = io();
      expect(await runCli(['--url', api.url, '--token', 't', 'point', 'list'], pointList.streams, store)).toBe(0);
      expect(pointList.out().split('\n')).toEqual([
        'ID  VM   CREATED               DISKS      SIZE  STORED',
        'p1  web  2026-01-02T03:04:05Z  disk-2000  10 B  1.5 KiB',
        'p0  v9   2026-01-01T00:00:00Z  disk-2000  10 B  0 B',
        '',
      ]);
    } finally {
      await api.close();
    }
  });

  it('finishes the progress bar of backup run --wait on the terminal before the summary is printed', async () => {
    const vmId = '0f8a3a52-3c39-4c1a-9d7e-1b0f3f0b7a11';
    let polls = 0;
    const job = (state: string, bytesDone: number) => ({
      id: 'j1', state, progress: bytesDone / 40, bytesDone, bytesTotal: 4000, speed: 2e6, phase: null,
      restorePointId: state === 'succeeded' ? 'p1' : null, stats: { bytesRead: bytesDone, newBytes: 100, newChunks: 1 },
    });
    const api = await fakeApi((req) => {
      if (req.url === '/api/vms') return { status: 200, json: [{ id: vmId, hostId: 'h', name: 'web', moref: 'vm-1', diskCount: 1, capacityBytes: 4000 }] };
      if (req.method === 'POST') return { status: 202, json: job('queued', 0) };
      polls++;
      return { status: 200, json: polls === 1 ? job('running', 1000) : job('succeeded', 4000) };
    });
    const log: [string, string][] = [];
    const streams = { stdout: recorder('out', log), stderr: recorder('err', log, true), stdin: new PassThrough() };
    const sigintListeners = process.listenerCount('SIGINT');
    try {
      expect(await runCli(['--url', api.url, '--token', 't', 'backup', 'run', 'web', '--wait'], streams, store)).toBe(0);
      expect(polls).toBe(2);
      const err = log.filter(([s]) => s === 'err').map(([, text]) => text).join('');
      expect(err.startsWith('backup of web: job j1\n')).toBe(true);
      expect(err).toContain('100% | 3.9 KiB / 3.9 KiB | 2.0 MB/s | succeeded');
      // The cursor is shown again, line wrapping restored and the bar's line ended.
      expect(err.lastIndexOf('\x1B[?25h')).toBeGreaterThan(err.lastIndexOf('\x1B[?25l'));
      expect(err.lastIndexOf('\x1B[?7h')).toBeGreaterThan(err.lastIndexOf('\x1B[?7l'));
      expect(err.endsWith('\n')).toBe(true);
      // Everything on stderr came before the summary on stdout.
      const firstOut = log.findIndex(([s]) => s === 'out');
      expect(log.slice(firstOut).every(([s]) => s === 'out')).toBe(true);
      expect(log.slice(firstOut).map(([, text]) => text).join('')).toMatch(/^backup of web succeeded: restore point p1\n {2}read .*\n$/);
      expect(process.listenerCount('SIGINT')).toBe(sigintListeners);
    } finally {
      await api.close();
    }
  });
});
