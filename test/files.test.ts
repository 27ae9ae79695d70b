// File-level browsing and downloads, in process: the real API (SQLite in a temp folder, the test Redis), a real
// repository holding a GPT disk with an ext4 (mke2fs -d) and a FAT16 (mkfs.fat + mcopy) partition made by sgdisk,
// and the real CLI against that API and straight against the repository. Bytes are compared with the source tree,
// zips with zipinfo/unzip, tars with GNU tar.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig } from '@vmkeep/config';
import { HostEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { roleTokens, startApiApp } from './peers/api-app';
import { runCliInProcess } from './peers/cli';
import { seededBytes } from './peers/disk-images';
import { MiB, makeExt, makeFat, placeImage, run, walkHostTree } from './peers/fs-images';
import { imagePoint } from './peers/repository-points';

const execFileP = promisify(execFile);
const REDIS_DB = 12;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let tree: string;
let fatTree: string;
let app: INestApplication;
let url: string;
let pointId: string;
let repoPointId: string;
let repoPath: string;
const tokens: Record<'admin' | 'operator' | 'viewer', string> = { admin: '', operator: '', viewer: '' };

const api = () => request(app.getHttpServer());
const as = (who: keyof typeof tokens) => ({ Authorization: `Bearer ${tokens[who]}` });
const vol = (n: number, rest = '') => `/api/restore-points/${pointId}/volumes/${n}${rest}`;
/** supertest: collect a binary body. */
const binary = (res: request.Response, cb: (err: Error | null, body: Buffer) => void) => {
  const parts: Buffer[] = [];
  res.on('data', (c: Buffer) => parts.push(c));
  res.on('end', () => cb(null, Buffer.concat(parts)));
};

const cli = (args: string[]) => runCliInProcess(args, { home: dir });

async function writeAt(file: string, offset: number, data: Buffer): Promise<void> {
  const h = await fs.promises.open(file, fs.constants.O_RDWR | fs.constants.O_CREAT);
  await h.write(data, 0, data.length, offset);
  await h.close();
}

/** The guest tree: text, a multi-MiB file, a sparse file, symlinks, a UTF-8 name, nested folders. */
async function buildTree(root: string): Promise<void> {
  const put = async (rel: string, data: Buffer | string) => {
    await fs.promises.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.promises.writeFile(path.join(root, rel), data);
  };
  await put('hello.txt', 'hello, files\n');
  await put('big.bin', seededBytes('files', 'big', 3 * MiB + 17));
  await put('docs/ünïcødé — ✓.txt', 'unicode name\n');
  await put('docs/nested/deep.txt', 'deep\n');
  await put('empty', '');
  await fs.promises.chmod(path.join(root, 'hello.txt'), 0o640);
  const sparse = path.join(root, 'sparse.img');
  await fs.promises.writeFile(sparse, '');
  await fs.promises.truncate(sparse, 6 * MiB);
  await writeAt(sparse, MiB, seededBytes('files', 'sparse-1', 5000));
  await writeAt(sparse, 4 * MiB + 7, seededBytes('files', 'sparse-2', 3000));
  await fs.promises.symlink('hello.txt', path.join(root, 'link'));
  await fs.promises.symlink('../hello.txt', path.join(root, 'docs', 'up-link'));
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-files-'));
  tree = path.join(dir, 'tree');
  fatTree = path.join(dir, 'fat-tree');
  await buildTree(tree);
  fs.mkdirSync(fatTree);
  fs.writeFileSync(path.join(fatTree, 'README.TXT'), 'fat volume\n');
  fs.writeFileSync(path.join(fatTree, 'data.bin'), seededBytes('files', 'fat', 200_000));

  // GPT disk: partition 1 ext4 (24 MiB), partition 2 FAT16 (16 MiB).
  const disk = path.join(dir, 'disk.raw');
  fs.writeFileSync(disk, '');
  fs.truncateSync(disk, 48 * MiB);
  await run('sgdisk', ['-n', '1:2048:+24M', '-t', '1:8300', '-c', '1:root', '-n', '2:0:+16M', '-t', '2:0700', '-c', '2:boot', disk]);
  await placeImage(disk, 2048 * 512, await makeExt(path.join(dir, 'ext.img'), tree, { type: 'ext4', sizeMiB: 24 }));
  const fatStart = Number(/^\s*2\s+(\d+)/m.exec(await run('sgdisk', ['-p', disk]))![1]) * 512;
  await placeImage(disk, fatStart, await makeFat(path.join(dir, 'fat.img'), fatTree, 16, 16));

  const redis = new URL(process.env.TEST_REDIS_URL!);
  redis.pathname = `/${REDIS_DB}`;
  const config = loadConfig({ VMKEEP_DATA_DIR: dir, REDIS_URL: redis.toString(), VMKEEP_ADMIN_PASSWORD: 'admin-pw-123' }, dir);
  repoPath = config.repositoryPath;
  repoPointId = await imagePoint(repoPath, disk, { vm: 'files-vm' });

  ({ app, url } = await startApiApp(config));
  const data = app.get(DataSource);
  Object.assign(tokens, await roleTokens(app, 'admin-pw-123'));
  const host = await data.getRepository(HostEntity).save({ name: 'vc1', url: 'https://vc1.invalid', username: 'u', passwordSealed: 'x' });
  const vm = await data.getRepository(VmEntity).save({ hostId: host.id, moref: 'vm-1', name: 'files-vm' });
  const point = await data.getRepository(RestorePointEntity).save({
    vmId: vm.id,
    jobId: null,
    repositoryPointId: repoPointId,
    repositoryPath: repoPath,
    disks: [{ key: 'disk-2000', deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 48 * MiB, fileName: '[ds1] files-vm/files-vm.vmdk' }],
    sizeBytes: 48 * MiB,
    storedBytes: 0,
  });
  pointId = point.id;
}, 60_000);

afterAll(async () => {
  await app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('browsing through the API', () => {
  it('lists the volumes of the point with their file systems, sizes and clean state', async () => {
    const res = await api().get(`/api/restore-points/${pointId}/volumes`).set(as('viewer')).expect(200);
    expect(res.body).toHaveLength(2);
    expect(res.body[0]).toMatchObject({ volume: 0, id: 'disk0/1', diskKey: 'disk-2000', partition: 1, scheme: 'gpt', partitionName: 'root', start: 2048 * 512, size: 24 * MiB });
    expect(res.body[0].fileSystem).toMatchObject({ type: 'ext4', label: 'vmkeep-ext4', dirty: false, size: 24 * MiB });
    expect(res.body[1]).toMatchObject({ volume: 1, id: 'disk0/2', partition: 2, partitionName: 'boot', size: 16 * MiB });
    expect(res.body[1].fileSystem).toMatchObject({ type: 'fat16', label: 'VMKEEP16', dirty: false });
  });

  it('pages and sorts a folder', async () => {
    const bySize = await api().get(vol(0, '/dir')).query({ path: '/', sort: 'size', order: 'desc', limit: 2 }).set(as('viewer')).expect(200);
    expect(bySize.body.entries.map((e: { name: string }) => e.name)).toEqual(['sparse.img', 'big.bin']);
    expect(bySize.body.entries[1]).toMatchObject({ type: 'file', size: 3 * MiB + 17 });
    const names = new Set<string>();
    for (let offset: number | null = 0; offset !== null; ) {
      const page: request.Response = await api().get(vol(0, '/dir')).query({ path: '/', sort: 'name', offset, limit: 3 }).set(as('viewer')).expect(200);
      expect(page.body.total).toBe(7); // the tree's 6 entries and lost+found
      for (const e of page.body.entries) names.add(e.name);
      offset = page.body.nextOffset;
    }
    expect([...names].sort()).toEqual([...fs.readdirSync(tree), 'lost+found'].sort());
    const docs = await api().get(vol(0, '/dir')).query({ path: 'docs/nested/..' }).set(as('viewer')).expect(200);
    expect(docs.body.path).toBe('/docs');
    expect(docs.body.entries.map((e: { name: string }) => e.name).sort()).toEqual(['nested', 'up-link', 'ünïcødé — ✓.txt']);
  });

  it('stats files and reads symlink targets', async () => {
    const st = await api().get(vol(0, '/stat')).query({ path: '/hello.txt' }).set(as('viewer')).expect(200);
    const host = fs.statSync(path.join(tree, 'hello.txt'));
    expect(st.body).toMatchObject({ path: '/hello.txt', type: 'file', size: host.size, mode: 0o640 });
    expect(Math.floor(new Date(st.body.mtime).getTime() / 1000)).toBe(Math.floor(host.mtimeMs / 1000));
    const link = await api().get(vol(0, '/readlink')).query({ path: '/docs/up-link' }).set(as('viewer')).expect(200);
    expect(link.body).toEqual({ path: '/docs/up-link', target: '../hello.txt' });
  });

  it('refuses traversal, missing paths and unknown volumes with clear errors', async () => {
    const up = await api().get(vol(0, '/stat')).query({ path: '/docs/../../etc/passwd' }).set(as('viewer')).expect(400);
    expect(up.body.message).toMatch(/leaves the root/);
    await api().get(vol(0, '/file')).query({ path: '../hello.txt' }).set(as('admin')).expect(400);
    const missing = await api().get(vol(0, '/stat')).query({ path: '/nope' }).set(as('viewer')).expect(404);
    expect(missing.body.message).toMatch(/ENOENT/);
    await api().get(vol(0, '/readlink')).query({ path: '/hello.txt' }).set(as('viewer')).expect(400);
    await api().get(vol(7, '/dir')).set(as('viewer')).expect(404);
    await api().get(vol(0, '/dir')).query({ sort: 'colour' }).set(as('viewer')).expect(400);
  });
});

describe('downloads through the API', () => {
  it('streams whole files (holes as zeros) and honours Range', async () => {
    for (const name of ['big.bin', 'sparse.img', 'docs/ünïcødé — ✓.txt']) {
      const res = await api().get(vol(0, '/file')).query({ path: `/${name}` }).set(as('operator')).buffer(true).parse(binary).expect(200);
      expect(sha(res.body)).toBe(sha(fs.readFileSync(path.join(tree, name))));
    }
    const src = fs.readFileSync(path.join(tree, 'sparse.img'));
    const part = await api().get(vol(0, '/file')).query({ path: '/sparse.img' }).set(as('operator')).set('Range', `bytes=${MiB - 10}-${MiB + 99}`).buffer(true).parse(binary).expect(206);
    expect(part.headers['content-range']).toBe(`bytes ${MiB - 10}-${MiB + 99}/${6 * MiB}`);
    expect(part.body.equals(src.subarray(MiB - 10, MiB + 100))).toBe(true);
    await api().get(vol(0, '/file')).query({ path: '/hello.txt' }).set(as('operator')).set('Range', 'bytes=999-').expect(416);
    const fat = await api().get(vol(1, '/file')).query({ path: '/data.bin' }).set(as('operator')).buffer(true).parse(binary).expect(200);
    expect(sha(fat.body)).toBe(sha(fs.readFileSync(path.join(fatTree, 'data.bin'))));
  });

  it('lets viewers browse but not download, and audit-logs downloads', async () => {
    await api().get(vol(0, '/file')).query({ path: '/hello.txt' }).set(as('viewer')).expect(403);
    await api().get(vol(0, '/archive')).query({ path: '/docs' }).set(as('viewer')).expect(403);
    const audit = await api().get('/api/audit').set(as('admin')).expect(200);
    const items = (audit.body.items ?? audit.body) as { action: string; target: string }[];
    expect(items.some((i) => i.action === 'files.download' && i.target === pointId)).toBe(true);
  });

  it('sends a folder as a ZIP64 that zipinfo and unzip read back byte for byte', async () => {
    const res = await api().get(vol(0, '/archive')).query({ path: '/', format: 'zip' }).set(as('operator')).buffer(true).parse(binary).expect(200);
    const zip = path.join(dir, 'root.zip');
    fs.writeFileSync(zip, res.body);
    const listing = (await execFileP('zipinfo', ['-1', zip], { env: { ...process.env, LC_ALL: 'C.UTF-8' } })).stdout.split('\n').filter(Boolean);
    expect(listing).toEqual(expect.arrayContaining(['volume-0/', 'volume-0/big.bin', 'volume-0/docs/ünïcødé — ✓.txt', 'volume-0/link', 'volume-0/lost+found/']));
    const out = path.join(dir, 'unzipped');
    await execFileP('unzip', ['-q', zip, '-d', out], { env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    expect(await walkHostTree(path.join(out, 'volume-0'))).toEqual({ ...(await walkHostTree(tree)), '/lost+found': { type: 'directory' } });
  });

  it('sends a folder as a PAX tar with symlinks, modes and sparse files that GNU tar unpacks', async () => {
    const res = await api().get(vol(0, '/archive')).query({ path: '/', format: 'tar' }).set(as('operator')).buffer(true).parse(binary).expect(200);
    const tarFile = path.join(dir, 'root.tar');
    fs.writeFileSync(tarFile, res.body);
    // The sparse file travels as its data only (two small extents), not 6 MiB of zeros.
    expect(res.body.length).toBeLessThan(3 * MiB + 17 + 200_000);
    const listing = (await execFileP('tar', ['-tvf', tarFile], { env: { ...process.env, LC_ALL: 'C.UTF-8' } })).stdout;
    expect(listing).toMatch(/^lrwxrwxrwx .* volume-0\/link -> hello.txt$/m);
    expect(listing).toMatch(/^-rw-r----- .* 13 .* volume-0\/hello.txt$/m);
    const out = path.join(dir, 'untarred');
    fs.mkdirSync(out);
    await execFileP('tar', ['-xf', tarFile, '-C', out]);
    expect(await walkHostTree(path.join(out, 'volume-0'))).toEqual({ ...(await walkHostTree(tree)), '/lost+found': { type: 'directory' } });
  });
});

describe('CLI', () => {
  const global = () => ['--url', url, '--token', tokens.operator];

  it('files ls lists volumes, then a folder as JSON', async () => {
    const volumes = await cli(['files', 'ls', pointId, ...global()]);
    expect(volumes.code).toBe(0);
    expect(volumes.stdout).toMatch(/ext4/);
    expect(volumes.stdout).toMatch(/fat16/);
    expect(volumes.stdout).toMatch(/disk0\/2/);
    const r = await cli(['files', 'ls', pointId, '/docs', '--volume', '0', '--json', ...global()]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).entries.map((e: { name: string }) => e.name)).toEqual(['nested', 'up-link', 'ünïcødé — ✓.txt']);
    const ambiguous = await cli(['files', 'ls', pointId, '/', ...global()]);
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toMatch(/choose one with --volume/);
  });

  it('files get writes a file, and unpacks a folder with its symlinks', async () => {
    const file = path.join(dir, 'cli-big.bin');
    expect((await cli(['files', 'get', pointId, '/big.bin', '--volume', '0', '--output', file, ...global()])).code).toBe(0);
    expect(sha(fs.readFileSync(file))).toBe(sha(fs.readFileSync(path.join(tree, 'big.bin'))));
    const out = path.join(dir, 'cli-root');
    const r = await cli(['files', 'get', pointId, '/', '--volume', '0', '--output', out, ...global()]);
    expect(r.code).toBe(0);
    expect(await walkHostTree(path.join(out, 'volume-0'))).toEqual({ ...(await walkHostTree(tree)), '/lost+found': { type: 'directory' } });
    const sparse = fs.statSync(path.join(out, 'volume-0', 'sparse.img'));
    expect(sparse.blocks * 512).toBeLessThan(MiB); // holes stay holes
    const viewer = await cli(['files', 'get', pointId, '/hello.txt', '--volume', '0', '--output', path.join(dir, 'v.txt'), '--url', url, '--token', tokens.viewer]);
    expect(viewer.code).toBe(1);
    expect(viewer.stderr).toMatch(/HTTP 403/);
  });

  it('repo files ls|get read the repository without the server', async () => {
    const ls = await cli(['repo', 'files', 'ls', repoPointId, '/', '--repo', repoPath, '--volume', '1', '--json']);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout).entries.map((e: { name: string }) => e.name).sort()).toEqual(['README.TXT', 'data.bin']);
    const out = path.join(dir, 'offline');
    const get = await cli(['repo', 'files', 'get', repoPointId, '/docs', '--repo', repoPath, '--volume', '0', '--output', out]);
    expect(get.code).toBe(0);
    expect(await walkHostTree(path.join(out, 'docs'))).toEqual(await walkHostTree(path.join(tree, 'docs')));
    const escape = await cli(['repo', 'files', 'get', repoPointId, '/../x', '--repo', repoPath, '--volume', '0', '--output', out]);
    expect(escape.code).toBe(1);
    expect(escape.stderr).toMatch(/leaves the root/);
  });
});
