import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { CredentialStore } from '../credentials';
import { runCli } from '../program';

const DEFAULT_ID = '0f5b8e1c-3a7d-4c2e-9b61-5d4f3e2a1b00';
const OFFSITE_ID = '7c2d9a4e-1b3f-4e8a-a5d6-2f1e0c9b8a77';
const REPOSITORIES = [
  { id: DEFAULT_ID, name: 'default', location: '/srv/vmkeep', kind: 'folder', encrypted: false, isDefault: true, s3: null, pointCount: 0, storedBytes: 0 },
  { id: OFFSITE_ID, name: 'offsite', location: '/mnt/offsite', kind: 'folder', encrypted: true, isDefault: false, s3: null, pointCount: 0, storedBytes: 0 },
];
const POLICY = {
  id: 'a9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a',
  name: 'web',
  enabled: true,
  cron: '0 3 * * *',
  timeZone: 'UTC',
  schedule: { daily: '03:00' },
  window: null,
  selection: {},
  retention: { keepLast: 7 },
  quiesce: 'try',
  cbt: true,
  priority: 0,
  concurrency: {},
  retries: 0,
  retryBackoffSeconds: 60,
  repositoryId: OFFSITE_ID,
  nextRunAt: null,
  vms: [],
  overlaps: [],
  warnings: [],
};

/** A real HTTP server standing in for the API: repositories, one policy, and create/update echoing what was sent. */
async function fakeApi() {
  const calls: { method: string; url: string; body: Record<string, unknown> }[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      calls.push({ method: req.method!, url: req.url!, body });
      const reply = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (req.method === 'GET' && req.url === '/api/repositories') return reply(200, REPOSITORIES);
      if (req.method === 'GET' && req.url === '/api/policies') return reply(200, [POLICY]);
      if (req.method === 'POST' && req.url === '/api/policies') return reply(201, { ...POLICY, repositoryId: null, ...body, id: 'new' });
      if (req.method === 'PATCH' && req.url === `/api/policies/${POLICY.id}`) return reply(200, { ...POLICY, ...body });
      reply(404, { message: 'not found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const writes = () => calls.filter((c) => c.method !== 'GET');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, writes, close: () => new Promise((r) => server.close(r)) };
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

describe('vmkeep policy create|update --repository', () => {
  let dir: string;
  let store: CredentialStore;
  let api: Awaited<ReturnType<typeof fakeApi>>;
  const cli = async (...args: string[]) => {
    const run = io();
    const code = await runCli(['--url', api.url, '--token', 't', 'policy', ...args], run.streams, store);
    return { code, out: run.out(), err: run.err() };
  };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-policy-repo-'));
    store = new CredentialStore(path.join(dir, 'credentials.json'));
    api = await fakeApi();
  });
  afterEach(async () => {
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('create resolves a repository name to its id', async () => {
    const r = await cli('create', 'nightly', '--daily', '02:00', '--repository', 'offsite');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(api.writes()).toEqual([{ method: 'POST', url: '/api/policies', body: expect.objectContaining({ name: 'nightly', repositoryId: OFFSITE_ID }) }]);
    expect(r.out).toContain(`repository: ${OFFSITE_ID}`);
  });

  it('create takes an id as well, and sends no repository without the flag', async () => {
    expect((await cli('create', 'a', '--daily', '02:00', '--repository', OFFSITE_ID)).code).toBe(0);
    const plain = await cli('create', 'b', '--daily', '02:00');
    expect(plain.code).toBe(0);
    expect(plain.out).toContain('repository: default');
    expect(api.writes().map((w) => w.body.repositoryId)).toEqual([OFFSITE_ID, undefined]);
  });

  it('update to the default repository sends null (the policy follows the default)', async () => {
    const r = await cli('update', 'web', '--repository', 'default');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(api.writes()).toEqual([{ method: 'PATCH', url: `/api/policies/${POLICY.id}`, body: { repositoryId: null } }]);
    expect(r.out).toContain('repository: default');
  });

  it('refuses an unknown repository before changing anything', async () => {
    const r = await cli('update', 'web', '--repository', 'tape');
    expect(r.code).toBe(1);
    expect(r.err).toContain('no repository named or with id "tape"');
    expect(api.writes()).toEqual([]);
  });
});
