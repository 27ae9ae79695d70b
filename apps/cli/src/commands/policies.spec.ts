import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { CredentialStore } from '../credentials';
import { runCli } from '../program';

/** A real HTTP server standing in for the API: answers POST /api/policies with the policy it was sent. */
async function fakeApi() {
  const bodies: unknown[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const sent = body ? JSON.parse(body) : {};
      bodies.push(sent);
      const policy = { id: 'p1', enabled: true, cron: '0 3 * * *', timeZone: 'UTC', window: null, retention: {}, quiesce: 'try', cbt: true, priority: 0, concurrency: {}, retries: 0, retryBackoffSeconds: 60, nextRunAt: null, vms: [], overlaps: [], warnings: [], ...sent };
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(policy));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, close: () => new Promise((r) => server.close(r)) };
}

function io() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end('');
  let err = '';
  let out = '';
  stderr.on('data', (d) => (err += d));
  stdout.on('data', (d) => (out += d));
  return { streams: { stdout, stderr, stdin }, err: () => err, out: () => out };
}

describe('vmkeep policy create: selection criteria', () => {
  let dir: string;
  let store: CredentialStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-policies-'));
    store = new CredentialStore(path.join(dir, 'credentials.json'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sends folders, pools, tags and attributes as the API takes them', async () => {
    const api = await fakeApi();
    try {
      const args = ['--folder', '/DC0/vm/prod', '--pool', 'gold', '--tag', 'env:prod', '--tag', 'backup: daily ', '--attribute', 'owner=web-*', '--attribute', 'note=a=b'];
      const run = io();
      const code = await runCli(['--url', api.url, '--token', 't', 'policy', 'create', 'web', '--daily', '03:00', ...args], run.streams, store);
      expect(code).toBe(0);
      expect(run.out()).toContain('selection: folders /DC0/vm/prod; resourcePools gold; tags env:prod, backup:daily; customAttributes owner=web-*, note=a=b');
      expect(api.bodies[0]).toMatchObject({
        selection: {
          folders: ['/DC0/vm/prod'],
          resourcePools: ['gold'],
          tags: [{ category: 'env', name: 'prod' }, { category: 'backup', name: 'daily' }],
          customAttributes: [{ name: 'owner', value: 'web-*' }, { name: 'note', value: 'a=b' }],
        },
      });
    } finally {
      await api.close();
    }
  });

  it.each([
    [['--tag', 'prod'], '--tag needs category:tag (got "prod")'],
    [['--attribute', '=x'], '--attribute needs name=glob (got "=x")'],
  ])('refuses %j before calling the API', async (args, message) => {
    const api = await fakeApi();
    try {
      const run = io();
      expect(await runCli(['--url', api.url, '--token', 't', 'policy', 'create', 'web', '--daily', '03:00', ...args], run.streams, store)).toBe(1);
      expect(run.err()).toContain(message);
      expect(api.bodies).toEqual([]);
    } finally {
      await api.close();
    }
  });
});
