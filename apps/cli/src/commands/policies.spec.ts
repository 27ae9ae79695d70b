import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CredentialStore } from '../credentials';
import { runCli } from '../program';
import { fakeApi, io } from '../testing/fake-api';

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

/** The fake API of these specs: repositories, one policy, and create/update echoing what was sent. */
async function policiesApi() {
  const api = await fakeApi((req, text) => {
    const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (req.method === 'GET' && req.url === '/api/repositories') return { status: 200, json: REPOSITORIES };
    if (req.method === 'GET' && req.url === '/api/policies') return { status: 200, json: [POLICY] };
    if (req.method === 'POST' && req.url === '/api/policies') return { status: 201, json: { ...POLICY, repositoryId: null, ...body, id: 'new' } };
    if (req.method === 'PATCH' && req.url === `/api/policies/${POLICY.id}`) return { status: 200, json: { ...POLICY, ...body } };
    return { status: 404, json: { message: 'not found' } };
  });
  /** The requests that change something, bodies parsed. */
  const writes = () =>
    api.seen
      .filter((c) => c.method !== 'GET')
      .map((c) => ({ method: c.method, url: c.url, body: (c.body ? JSON.parse(c.body) : {}) as Record<string, unknown> }));
  return { ...api, writes };
}

let dir: string;
let store: CredentialStore;
let api: Awaited<ReturnType<typeof policiesApi>>;
/** Runs `vmkeep policy ARGS` against the fake API. */
const cli = async (...args: string[]) => {
  const run = io();
  const code = await runCli(['--url', api.url, '--token', 't', 'policy', ...args], run.streams, store);
  return { code, out: run.out(), err: run.err() };
};

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-policies-'));
  store = new CredentialStore(path.join(dir, 'credentials.json'));
  api = await policiesApi();
});
afterEach(async () => {
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('vmkeep policy create: selection criteria', () => {
  it('sends folders, pools, tags and attributes as the API takes them', async () => {
    const args = ['--folder', '/DC0/vm/prod', '--pool', 'gold', '--tag', 'env:prod', '--tag', 'backup: daily ', '--attribute', 'owner=web-*', '--attribute', 'note=a=b'];
    const r = await cli('create', 'web', '--daily', '03:00', ...args);
    expect(r.code).toBe(0);
    expect(r.out).toContain('selection: folders /DC0/vm/prod; resourcePools gold; tags env:prod, backup:daily; customAttributes owner=web-*, note=a=b');
    expect(api.writes()[0].body).toMatchObject({
      selection: {
        folders: ['/DC0/vm/prod'],
        resourcePools: ['gold'],
        tags: [{ category: 'env', name: 'prod' }, { category: 'backup', name: 'daily' }],
        customAttributes: [{ name: 'owner', value: 'web-*' }, { name: 'note', value: 'a=b' }],
      },
    });
  });

  it.each([
    [['--tag', 'prod'], '--tag needs category:tag (got "prod")'],
    [['--attribute', '=x'], '--attribute needs name=glob (got "=x")'],
  ])('refuses %j before calling the API', async (args, message) => {
    const r = await cli('create', 'web', '--daily', '03:00', ...args);
    expect(r.code).toBe(1);
    expect(r.err).toContain(message);
    expect(api.seen).toEqual([]);
  });
});

describe('vmkeep policy create|update --repository', () => {

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
