import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { CredentialStore } from './credentials';
import { runCli } from './program';

/** A real HTTP server standing in for the API, recording what the CLI sent. */
function fakeApi(handler: (req: http.IncomingMessage, body: string) => { status: number; json?: unknown; raw?: Buffer }) {
  const seen: { method?: string; url?: string; auth?: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
      const out = handler(req, body);
      if (out.raw) {
        res.writeHead(out.status, { 'content-length': out.raw.length });
        res.end(out.raw);
      } else {
        res.writeHead(out.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(out.json ?? {}));
      }
    });
  });
  return new Promise<{ url: string; seen: typeof seen; close(): Promise<void> }>((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        seen,
        close: () => new Promise((r) => server.close(() => r())),
      }),
    ),
  );
}

function io(input = '') {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end(input);
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { streams: { stdout, stderr, stdin }, out: () => out, err: () => err };
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
});
