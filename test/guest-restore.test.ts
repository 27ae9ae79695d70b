// Restoring files into a running guest: a real repository point holding an ext4 disk (mke2fs -d), the real API
// in process (SQLite, the test Redis) and CLI, and vcsim with the guest-operations harness (test/vcsim/guestops.go)
// standing in for VMware Tools: it checks the guest credentials and stores uploads under <vcsim dir>/guest/<vm>.
// Bytes, modes and paths in the "guest" are compared with the source tree.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig } from '@vmkeep/config';
import { RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { Repository } from '@vmkeep/repository';
import { FileBrowser, restoreToGuest, type GuestRestoreProgress } from '@vmkeep/restore';
import { GuestAuthenticationError, GuestToolsError, connect, transferUrl, type VimSession } from '@vmkeep/vsphere';
import { roleTokens, startApiApp } from './peers/api-app';
import { runCliInProcess } from './peers/cli';
import { seededBytes } from './peers/disk-images';
import { MiB, makeExt } from './peers/fs-images';
import { imagePoint } from './peers/repository-points';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

// Shares DB 12 with files.test.ts: neither enqueues anything.
const REDIS_DB = 12;
const GUEST = { username: 'root', password: 'guest-Secret-7' };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let tree: string;
let sim: VcsimInstance;
let app: INestApplication;
let url: string;
let pointId: string;
let guestVmId: string;
let noToolsVmId: string;
let operator: string;
let viewer: string;
let audit: () => Promise<unknown>;
let repoPath: string;
let repoPointId: string;

const api = () => request(app.getHttpServer());
const guestRoot = (vm: string) => path.join(sim.dir, 'guest', sim.vms.find((v) => v.name === vm)!.id);
const restoreUrl = () => `/api/restore-points/${pointId}/volumes/0/restore-to-guest`;

/** Files under `root` (relative path → sha256, or "dir"), symlinks left out. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (at: string, rel: string) => {
    for (const e of fs.readdirSync(at, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out[r] = 'dir';
        walk(path.join(at, e.name), r);
      } else if (e.isFile()) out[r] = sha(fs.readFileSync(path.join(at, e.name)));
    }
  };
  walk(root, '');
  return out;
}

const cli = (args: string[], input = '') => runCliInProcess(args, { home: dir, input });

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-guest-restore-'));
  tree = path.join(dir, 'tree');
  const put = (rel: string, data: Buffer | string) => {
    fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
    fs.writeFileSync(path.join(tree, rel), data);
  };
  put('etc/hosts', '127.0.0.1 localhost\n');
  put('srv/app/big.bin', seededBytes('guest', 'big', 2 * MiB + 333));
  put('srv/app/conf/app.ini', '[app]\nname = ünïcødé\n');
  put('srv/app/empty', '');
  fs.chmodSync(path.join(tree, 'etc/hosts'), 0o640);
  fs.symlinkSync('big.bin', path.join(tree, 'srv/app/link'));
  const disk = await makeExt(path.join(dir, 'disk.raw'), tree, { type: 'ext4', sizeMiB: 16 });

  sim = await startVcsim({
    seed: [
      { name: 'guest-vm', powerOn: true, disks: [{ image: disk }], guest: GUEST },
      { name: 'no-tools-vm', powerOn: true, disks: [{ image: disk }] },
    ],
  });

  const redis = new URL(process.env.TEST_REDIS_URL!);
  redis.pathname = `/${REDIS_DB}`;
  const config = loadConfig({ VMKEEP_DATA_DIR: dir, REDIS_URL: redis.toString(), VMKEEP_ADMIN_PASSWORD: 'admin-pw-123' }, dir);
  repoPath = config.repositoryPath;
  repoPointId = await imagePoint(repoPath, disk, { vm: 'guest-vm' });

  ({ app, url } = await startApiApp(config));
  const data = app.get(DataSource);
  const { admin, ...others } = await roleTokens(app, 'admin-pw-123');
  ({ operator, viewer } = others);

  const host = await api()
    .post('/api/hosts')
    .set('Authorization', `Bearer ${admin}`)
    .send({ name: 'sim', url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint })
    .expect(201);
  await api().post(`/api/hosts/${host.body.id}/sync`).set('Authorization', `Bearer ${admin}`).expect(200);
  const vms = data.getRepository(VmEntity);
  guestVmId = (await vms.findOneByOrFail({ name: 'guest-vm' })).id;
  noToolsVmId = (await vms.findOneByOrFail({ name: 'no-tools-vm' })).id;
  const point = await data.getRepository(RestorePointEntity).save({
    vmId: guestVmId,
    jobId: null,
    repositoryPointId: repoPointId,
    repositoryPath: config.repositoryPath,
    disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 16 * MiB, fileName: '[LocalDS_0] guest-vm/guest-vm_0.vmdk' }],
    sizeBytes: 16 * MiB,
    storedBytes: 0,
  });
  pointId = point.id;
  audit = async () => (await api().get('/api/audit').set('Authorization', `Bearer ${admin}`).expect(200)).body;
}, 120_000);

afterAll(async () => {
  await app?.close();
  await sim?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('restore into the running guest through the API', () => {
  it('restores a folder tree: bytes, paths and modes match; symlinks are skipped and reported', async () => {
    const res = await api()
      .post(restoreUrl())
      .set('Authorization', `Bearer ${operator}`)
      .send({ path: '/srv/app', guestPath: '/restore/here', guestUser: GUEST.username, guestPassword: GUEST.password })
      .expect(200);
    expect(res.body).toMatchObject({ target: '/restore/here/app', vmId: guestVmId, files: 3, folders: 2, bytes: 2 * MiB + 333 + Buffer.byteLength('[app]\nname = ünïcødé\n') });
    expect(res.body.skipped).toEqual([{ path: '/srv/app/link', reason: expect.stringMatching(/symlink/) }]);
    const restored = snapshot(path.join(guestRoot('guest-vm'), 'restore', 'here', 'app'));
    const source = snapshot(path.join(tree, 'srv', 'app'));
    expect(restored).toEqual(source);
    expect(Object.keys(restored).sort()).toEqual(['big.bin', 'conf', 'conf/app.ini', 'empty']);
  });

  it('restores a single file with its mode, refuses to overwrite unless asked', async () => {
    const body = { path: '/etc/hosts', guestPath: '/etc', guestUser: GUEST.username, guestPassword: GUEST.password };
    await api().post(restoreUrl()).set('Authorization', `Bearer ${operator}`).send(body).expect(200);
    const file = path.join(guestRoot('guest-vm'), 'etc', 'hosts');
    expect(fs.readFileSync(file, 'utf8')).toBe('127.0.0.1 localhost\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);

    fs.writeFileSync(file, 'changed in the guest\n');
    const refused = await api().post(restoreUrl()).set('Authorization', `Bearer ${operator}`).send(body).expect(409);
    expect(refused.body.message).toMatch(/\/etc\/hosts already exists in the guest.*overwrite/);
    expect(fs.readFileSync(file, 'utf8')).toBe('changed in the guest\n');
    await api().post(restoreUrl()).set('Authorization', `Bearer ${operator}`).send({ ...body, overwrite: true }).expect(200);
    expect(fs.readFileSync(file, 'utf8')).toBe('127.0.0.1 localhost\n');
  });

  it('wrong guest password: a clear 400, nothing written, the password neither in the answer nor in the audit log', async () => {
    const before = snapshot(guestRoot('guest-vm'));
    const res = await api()
      .post(restoreUrl())
      .set('Authorization', `Bearer ${operator}`)
      .send({ path: '/srv', guestPath: '/elsewhere', guestUser: GUEST.username, guestPassword: 'Wrong-Pass-1' })
      .expect(400);
    expect(res.body.message).toMatch(/guest refused the credentials.*InvalidGuestLogin/);
    expect(JSON.stringify(res.body)).not.toContain('Wrong-Pass-1');
    expect(snapshot(guestRoot('guest-vm'))).toEqual(before);
    const records = JSON.stringify(await audit());
    expect(records).toContain('files.restore-to-guest');
    expect(records).not.toContain('Wrong-Pass-1');
    expect(records).not.toContain(GUEST.password);
  });

  it('Tools not running: a clear 409 naming VMware Tools', async () => {
    const res = await api()
      .post(restoreUrl())
      .set('Authorization', `Bearer ${operator}`)
      .send({ path: '/etc/hosts', guestPath: '/tmp', guestUser: GUEST.username, guestPassword: GUEST.password, vmId: noToolsVmId })
      .expect(409);
    expect(res.body.message).toMatch(/VMware Tools are not running/);
  });

  it('viewers may not restore; bad paths are 400', async () => {
    const body = { path: '/etc/hosts', guestPath: '/x', guestUser: 'root', guestPassword: GUEST.password };
    await api().post(restoreUrl()).set('Authorization', `Bearer ${viewer}`).send(body).expect(403);
    const relative = await api().post(restoreUrl()).set('Authorization', `Bearer ${operator}`).send({ ...body, guestPath: 'relative/dir' }).expect(400);
    expect(relative.body.message).toMatch(/absolute path in the guest/);
    await api().post(restoreUrl()).set('Authorization', `Bearer ${operator}`).send({ ...body, guestPath: '/a/../b' }).expect(400);
    await api().post(restoreUrl()).set('Authorization', `Bearer ${operator}`).send({ ...body, path: '/nope' }).expect(404);
  });
});

describe('vmkeep files restore --to-guest', () => {
  it('restores a file with the password from stdin and prints the summary', async () => {
    const r = await cli(
      ['files', 'restore', pointId, '/srv/app/conf/app.ini', '--to-guest', '--vm', 'guest-vm', '--guest-path', '/opt/cfg', '--guest-user', GUEST.username, '--guest-password-stdin', '--url', url, '--token', operator],
      `${GUEST.password}\n`,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/restored \/opt\/cfg\/app\.ini: 1 file\(s\)/);
    expect(fs.readFileSync(path.join(guestRoot('guest-vm'), 'opt', 'cfg', 'app.ini'), 'utf8')).toBe('[app]\nname = ünïcødé\n');
  });

  it('without --to-guest or with a wrong password it fails clearly', async () => {
    const noTarget = await cli(['files', 'restore', pointId, '/etc/hosts', '--guest-path', '/x', '--guest-user', 'root', '--guest-password', 'p', '--url', url, '--token', operator]);
    expect(noTarget.code).not.toBe(0);
    expect(noTarget.stderr).toMatch(/--to-guest/);
    const wrong = await cli(['files', 'restore', pointId, '/etc/hosts', '--to-guest', '--guest-path', '/y', '--guest-user', 'root', '--guest-password-stdin', '--url', url, '--token', operator], 'nope\n');
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/guest refused the credentials/);
    expect(fs.existsSync(path.join(guestRoot('guest-vm'), 'y'))).toBe(false);
  });
});

describe('GuestFiles (libs/vsphere) against the harness', () => {
  let session: VimSession;
  beforeAll(async () => {
    session = await connect({ url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint });
  });
  afterAll(async () => session?.logout());

  it('lists, makes folders, and maps faults to typed errors', async () => {
    const vm = sim.vms.find((v) => v.name === 'guest-vm')!.id;
    const guest = session.guestFiles(vm, GUEST);
    await expect(guest.requireTools()).resolves.toMatchObject({ powerState: 'poweredOn', toolsRunningStatus: 'guestToolsRunning' });
    await guest.makeDirectory('/lib-test/a/b', true);
    expect(await guest.stat('/lib-test/a')).toMatchObject({ path: 'a', type: 'directory' });
    expect(await guest.stat('/lib-test/none')).toBeUndefined();
    expect((await guest.list('/lib-test')).map((f) => f.path)).toEqual(['.', 'a']);
    await expect(session.guestFiles(vm, { username: 'root', password: 'bad' }).list('/')).rejects.toBeInstanceOf(GuestAuthenticationError);
    const other = sim.vms.find((v) => v.name === 'no-tools-vm')!.id;
    await expect(session.guestFiles(other, GUEST).requireTools()).rejects.toBeInstanceOf(GuestToolsError);
    await expect(session.guestFiles(other, GUEST).list('/')).rejects.toBeInstanceOf(GuestToolsError);
    expect(transferUrl('https://*:8443/guestFile?id=1&token=x', '127.0.0.1').toString()).toBe('https://127.0.0.1:8443/guestFile?id=1&token=x');
  });

  it('restoreToGuest reports progress per folder and file, ending at the bytes written', async () => {
    const vm = sim.vms.find((v) => v.name === 'guest-vm')!.id;
    const repo = await Repository.open(repoPath);
    const browser = await FileBrowser.open([{ key: 'disk-2000', disk: await repo.openDisk(repoPointId, 'disk-2000') }]);
    try {
      const seen: GuestRestoreProgress[] = [];
      const result = await restoreToGuest(session.guestFiles(vm, GUEST), {
        fs: browser.fileSystem(0), sourcePath: '/srv', guestFolder: '/progress', onProgress: (p) => seen.push({ ...p }),
      });
      expect(result).toMatchObject({ target: '/progress/srv', files: 3, folders: 3 });
      expect(seen.at(-1)).toMatchObject({ files: 3, folders: 3, bytes: result.bytes });
      for (let i = 1; i < seen.length; i++) expect(seen[i].bytes).toBeGreaterThanOrEqual(seen[i - 1].bytes);
      expect(seen.map((p) => p.current)).toContain('/progress/srv/app/big.bin');
      expect(snapshot(path.join(guestRoot('guest-vm'), 'progress', 'srv'))).toEqual(snapshot(path.join(tree, 'srv')));
    } finally {
      await browser.close();
    }
  });

  it('restoreToGuest stops when its signal aborts: before the first write, or between files', async () => {
    const vm = sim.vms.find((v) => v.name === 'guest-vm')!.id;
    const repo = await Repository.open(repoPath);
    const browser = await FileBrowser.open([{ key: 'disk-2000', disk: await repo.openDisk(repoPointId, 'disk-2000') }]);
    try {
      const options = { fs: browser.fileSystem(0), sourcePath: '/srv' };
      await expect(restoreToGuest(session.guestFiles(vm, GUEST), { ...options, guestFolder: '/aborted-early', signal: AbortSignal.abort(new Error('stop')) })).rejects.toThrow('stop');
      expect(fs.existsSync(path.join(guestRoot('guest-vm'), 'aborted-early'))).toBe(false);
      const controller = new AbortController();
      const onProgress = (p: GuestRestoreProgress) => {
        if (p.files === 1) controller.abort(new Error('user stopped'));
      };
      await expect(restoreToGuest(session.guestFiles(vm, GUEST), { ...options, guestFolder: '/aborted-mid', signal: controller.signal, onProgress })).rejects.toThrow('user stopped');
      const written = Object.entries(snapshot(path.join(guestRoot('guest-vm'), 'aborted-mid'))).filter(([, v]) => v !== 'dir');
      expect(written).toHaveLength(1);
    } finally {
      await browser.close();
    }
  });
});
