import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CredentialStore } from '../credentials';
import { runCli } from '../program';
import { fakeApi, io } from '../testing/fake-api';

const RESULT = {
  hits: [
    {
      vmId: 'b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e',
      vmName: 'web01',
      volume: 'disk-2000:0',
      path: '/etc/app.conf',
      versions: [{ type: 'file', size: 3, mtime: '2025-03-04T05:06:07.000Z', points: [{ id: 'p1', createdAt: '2025-03-05T00:00:00.000Z' }] }],
    },
  ],
  truncated: false,
  pointsSearched: 1,
  unindexedPoints: [],
  unavailableRepositories: [
    { id: 'r1', name: 'offsite', location: '/mnt/offsite', reason: 'no repository at /mnt/offsite (config file missing): moved, removed or not mounted?', points: 2 },
    { id: null, name: null, location: '/srv/old', reason: 'permission denied', points: 1 },
  ],
};

describe('vmkeep files find', () => {
  let dir: string;
  let api: Awaited<ReturnType<typeof fakeApi>>;
  const cli = async (...args: string[]) => {
    const run = io();
    const code = await runCli(['--url', api.url, '--token', 't', 'files', 'find', ...args], run.streams, new CredentialStore(path.join(dir, 'c.json')));
    return { code, out: run.out(), err: run.err() };
  };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-find-'));
    api = await fakeApi(() => ({ status: 200, json: RESULT }));
  });
  afterEach(async () => {
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('prints the hits and one warning line per repository that could not be searched', async () => {
    const run = await cli('*.conf');
    expect(run.code).toBe(0);
    expect(api.seen[0].url).toBe('/api/search/files?q=*.conf');
    expect(run.out).toContain('disk-2000:0/etc/app.conf');
    expect(run.err.split('\n').filter(Boolean)).toEqual([
      'warning: repository "offsite" (/mnt/offsite) could not be searched, 2 restore point(s) skipped: ' +
        'no repository at /mnt/offsite (config file missing): moved, removed or not mounted?',
      'warning: repository /srv/old could not be searched, 1 restore point(s) skipped: permission denied',
    ]);
  });

  it('keeps the report in the JSON output and stderr empty with --json', async () => {
    const run = await cli('*.conf', '--json');
    expect(run.code).toBe(0);
    expect(run.err).toBe('');
    expect(JSON.parse(run.out)).toEqual(RESULT);
  });
});
