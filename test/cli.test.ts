// The `vmkeep` CLI as a user runs it (bin/vmkeep.js, compiled) against the real appliance (API + worker, Redis,
// SQLite) and vcsim: login with a saved token, hosts, VMs, a backup with --wait, restore points, --json everywhere,
// and the server's own messages with a non-zero exit code when something is wrong.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startAppliance, vmkeep, type Appliance } from './peers/appliance';
import { flushRedisDb } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const REDIS_DB = 4;
const MiB = 1024 * 1024;

let work: string;
let home: string;
let vcsim: VcsimInstance;
let app: Appliance;
let image: string;

/** Runs the CLI with the appliance's URL in VMKEEP_URL and no token unless given. */
const cli = (args: string[], extra: { env?: Record<string, string>; input?: string } = {}) =>
  vmkeep(args, { home, env: { VMKEEP_URL: app.url, ...extra.env }, input: extra.input });

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-test-'));
  home = path.join(work, 'home');
  fs.mkdirSync(home);
  image = path.join(work, 'disk.img');
  fs.writeFileSync(image, Buffer.concat([randomBytes(MiB), Buffer.alloc(MiB)]));
  vcsim = await startVcsim({ seed: [{ name: 'cli-vm', disks: [{ image }] }] });
  const redisUrl = process.env.TEST_REDIS_URL!;
  await flushRedisDb(redisUrl, REDIS_DB);
  app = await startAppliance({ redisUrl, redisDb: REDIS_DB });
});

afterAll(async () => {
  await app?.stop();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('vmkeep CLI', () => {
  it('refuses calls without a token with the server message and exit code 1', async () => {
    const res = await cli(['host', 'list']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: .*\(HTTP 401\)\n$/);
    expect(res.stdout).toBe('');
  });

  it('rejects a wrong password and saves nothing', async () => {
    const res = await cli(['login', '--username', 'admin', '--password-stdin'], { input: 'wrong\n' });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/HTTP 401/);
    expect(fs.existsSync(path.join(home, '.config', 'vmkeep', 'credentials.json'))).toBe(false);
  });

  it('logs in, saves the token with mode 0600 and uses it afterwards', async () => {
    const res = await cli(['login', '--username', 'admin', '--password-stdin', '--json'], {
      input: `${app.adminPassword}\n`,
    });
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const file = path.join(home, '.config', 'vmkeep', 'credentials.json');
    expect(JSON.parse(res.stdout)).toMatchObject({ url: app.url, username: 'admin', credentials: file });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, 'utf8')).not.toContain(app.adminPassword);

    const list = await cli(['host', 'list', '--json']);
    expect(list).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(list.stdout)).toEqual([]);
  });

  it('adds a host (password from stdin), syncs it by name and lists its VMs', async () => {
    const add = await cli(
      ['host', 'add', 'lab', '--url', vcsim.url, '--username', vcsim.username, '--password-stdin', '--thumbprint', vcsim.thumbprint, '--json'],
      { input: vcsim.password },
    );
    expect(add).toMatchObject({ code: 0, stderr: '' });
    const host = JSON.parse(add.stdout) as { id: string; name: string };
    expect(host.name).toBe('lab');
    expect(add.stdout).not.toContain(vcsim.password);

    const sync = await cli(['host', 'sync', 'lab']);
    expect(sync).toMatchObject({ code: 0, stderr: '' });
    expect(sync.stdout).toMatch(/^host lab synced/);

    const table = await cli(['host', 'list']);
    expect(table.stdout).toMatch(/^ID\s+NAME\s+URL/);
    expect(table.stdout).toContain(host.id);

    const vms = await cli(['vm', 'list', '--host', 'lab', '--json']);
    const names = (JSON.parse(vms.stdout) as { name: string }[]).map((v) => v.name);
    expect(names).toContain('cli-vm');

    const vmTable = await cli(['vm', 'list', '--host', 'lab']);
    expect(vmTable).toMatchObject({ code: 0, stderr: '' });
    expect(vmTable.stdout).toMatch(/^ID\s+NAME\s+MOREF\s+POWER\s+DISKS\s+SIZE\n/);
    expect(vmTable.stdout).toMatch(/^\S+\s+cli-vm\s+vm-\d+\s+\S+\s+1\s+2\.0 MiB$/m);
    expect(vmTable.stdout.endsWith('\n')).toBe(true);
  });

  it('names an unknown VM, and a duplicate host name comes back with the server message', async () => {
    const unknown = await cli(['backup', 'run', 'no-such-vm']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: no VM named or with id "no-such-vm" (see: vmkeep vm list)\n');

    const dup = await cli(['host', 'add', 'lab', '--url', vcsim.url, '--username', 'u', '--password', 'p']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/^error: .*\(HTTP 4\d\d\)\n$/);
  });

  it('runs a backup with --wait, lists the point and restores the disk', async () => {
    const run = await cli(['backup', 'run', 'cli-vm', '--wait']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^backup of cli-vm succeeded: restore point [0-9a-f-]{36}\n/);
    const pointId = /restore point ([0-9a-f-]{36})/.exec(run.stdout)![1];

    const points = JSON.parse((await cli(['point', 'list', '--vm', 'cli-vm', '--json'])).stdout) as {
      id: string;
      disks: { key: string }[];
    }[];
    expect(points.map((p) => p.id)).toEqual([pointId]);
    const pointTable = await cli(['point', 'list', '--vm', 'cli-vm']);
    expect(pointTable.stdout).toMatch(new RegExp(`^${pointId}\\s+cli-vm\\s+\\S+\\s+disk-2000\\s+2\\.0 MiB\\s+\\S+.*\\n$`, 'm'));

    const output = path.join(work, 'out.raw');
    const restore = await cli(['restore', 'disk', pointId, '--disk', points[0].disks[0].key, '--output', output]);
    expect(restore.code).toBe(0);
    expect(fs.readFileSync(output).equals(fs.readFileSync(image))).toBe(true);

    const badDisk = await cli(['restore', 'disk', pointId, '--disk', 'disk-9', '--output', output]);
    expect(badDisk.code).toBe(1);
    expect(badDisk.stderr).toContain(`restore point ${pointId} has no disk "disk-9"`);
  });

  it('exits 2 on a usage error', async () => {
    const res = await cli(['restore', 'disk', 'x']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/required option '--disk <key>'/);
  });
});
