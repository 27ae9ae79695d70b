/**
 * XFS v5 reader against images made by `mkfs.xfs -p PROTOFILE` and checked with xfs_db, a tool we did not write:
 * every folder's names and inode numbers equal `xfs_db ls`, the folders really are in short-form, block, leaf,
 * node and B+tree form (xfs_db says so), every file's bytes and every symlink target equal the source tree,
 * extents equal `xfs_db bmap`; unwritten extents and holes (made with xfs_db in expert mode) read as zeros; a
 * log that needs recovery and an unfinished mkfs show as dirty; damaged structures fail with typed errors.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { openRaw } from '@vmkeep/disk-formats';
import { BufferDisk } from '@vmkeep/disk';
import { FileSystem, FileSystemError, openFileSystem, PathError, UnsupportedFileSystemError } from '@vmkeep/filesystems';
import { MiB, walkFileSystem, walkHostTree } from './peers/fs-images';
import { seededBytes } from './peers/disk-images';
import { buildXfsTree, makeBtreeFork, makeXfs, REMOTE_LINK_TARGET, XFS_UUID, xfsDb, xfsDbField, xfsDbList, xfsTool } from './peers/xfs-images';

let dir: string;
let tree: string;
let image: string;
let image1k: string;
let imageNrext64: string;
let madeAt: number;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-xfs-'));
  tree = path.join(dir, 'tree');
  await buildXfsTree(tree);
  madeAt = Date.now();
  image = await makeXfs(path.join(dir, 'xfs-4k.img'), tree, { sizeMiB: 64 });
  image1k = await makeXfs(path.join(dir, 'xfs-1k.img'), tree, { sizeMiB: 64, blockSize: 1024, dirBlockSize: 4096, label: 'vmkeep-1k' });
  imageNrext64 = await makeXfs(path.join(dir, 'xfs-nrext64.img'), tree, { sizeMiB: 128, label: 'vmkeep-n64', extraArgs: ['-i', 'nrext64=1'] });
  // States mkfs cannot make: a preallocated (unwritten) extent, and a file whose data starts after a hole.
  await xfsDb(image, ['path /prealloc.bin', 'write u3.bmx[0].extentflag 1', 'path /holey.bin', 'write u3.bmx[0].startoff 3', `write core.size ${7 * 4096}`], true);
}, 120_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function withFs<T>(file: string, body: (fsys: FileSystem) => Promise<T>): Promise<T> {
  const disk = await openRaw(file);
  try {
    return await body(await openFileSystem(disk));
  } finally {
    await disk.close();
  }
}

async function expectedTree(mutated: boolean) {
  const want = await walkHostTree(tree);
  if (mutated) {
    want['/prealloc.bin'] = { type: 'file', size: 5 * 4096, sha256: sha(Buffer.alloc(5 * 4096)) };
    const holey = Buffer.concat([Buffer.alloc(3 * 4096), seededBytes('xfs', 'holey', 4 * 4096)]);
    want['/holey.bin'] = { type: 'file', size: holey.length, sha256: sha(holey) };
  }
  want['/pipe'] = { type: 'fifo', size: 0, sha256: '' };
  want['/null'] = { type: 'char-device', size: 0, sha256: '' };
  return want;
}

/** Our view, with devices and FIFOs (which cannot be opened) reduced to their type. */
async function ourTree(fsys: FileSystem) {
  const special = new Set(['/pipe', '/null']);
  const out = await walkFileSystem(
    new Proxy(fsys, {
      get: (target, prop) => (prop === 'open' ? (p: string) => (special.has(p) ? Promise.resolve({ size: 0, read: async () => Buffer.alloc(0), extents: async () => [] }) : target.open(p)) : Reflect.get(target, prop)),
    }),
  );
  for (const p of special) out[p] = { ...out[p], type: (await fsys.stat(p)).type, sha256: '' };
  return out;
}

describe.each([
  ['4 KiB blocks (with unwritten extent and hole)', () => image, true, 'vmkeep-xfs', 64],
  ['1 KiB blocks, 4 KiB directory blocks', () => image1k, false, 'vmkeep-1k', 64],
  ['large extent counters (nrext64)', () => imageNrext64, false, 'vmkeep-n64', 128],
])('%s', (_title, file, mutated, label, sizeMiB) => {
  test('the whole tree equals the source tree, and every folder equals xfs_db ls (names and inode numbers)', async () => {
    await withFs(file(), async (fsys) => {
      expect(fsys.type).toBe('xfs');
      expect(fsys.uuid).toBe(XFS_UUID);
      expect(fsys.label).toBe(label);
      expect(fsys.size).toBe(sizeMiB * MiB);
      expect(fsys.dirty).toBe(false);
      expect(fsys.warnings).toEqual([]);
      const ours = await ourTree(fsys);
      expect(ours).toEqual(await expectedTree(mutated));
      const dirs = ['/', ...Object.keys(ours).filter((p) => ours[p].type === 'directory')];
      for (const d of dirs) {
        const all = await fsys.readdir(d, { limit: 100_000 });
        const mine = Object.fromEntries(all.entries.map((e) => [e.name, e.stat.inode]));
        expect({ d, listing: mine }).toEqual({ d, listing: await xfsDbList(file(), d) });
      }
    });
  }, 60_000);
});

test('xfs_repair -n finds nothing wrong with the images (including the xfs_db-made unwritten extent and hole)', async () => {
  expect(await xfsDbField(imageNrext64, '/frag', 'v3.nrext64')).toBe('1');
  for (const file of [image, image1k, imageNrext64]) await expect(xfsTool('xfs_repair', ['-n', '-f', file])).resolves.toEqual(expect.any(String));
});

test('the folders are in every directory form, as xfs_db reports them', async () => {
  const leafBlock = (32 * 1024 ** 3) / 4096;
  const freeBlock = (64 * 1024 ** 3) / 4096;
  const forms: Record<string, string> = {};
  for (const d of ['/sf', '/block', '/leaf', '/node', '/frag']) {
    const format = await xfsDbField(image, d, 'core.format');
    const bmap = await xfsDb(image, [`path ${d}`, 'bmap']);
    const offsets = [...bmap.matchAll(/data offset (\d+) startblock \d+ \(\d+\/\d+\) count (\d+)/g)].map((m) => Number(m[1]));
    const kind = format.startsWith('1') ? 'short form'
      : format.startsWith('3') ? 'B+tree fork'
        : offsets.some((o) => o >= freeBlock) ? 'node' : offsets.some((o) => o >= leafBlock) ? 'leaf' : 'block';
    forms[d] = kind;
  }
  expect(forms).toEqual({ '/sf': 'short form', '/block': 'block', '/leaf': 'leaf', '/node': 'node', '/frag': 'B+tree fork' });
  // The B+tree directory maps more extents than the inode can hold.
  expect(Number(await xfsDbField(image, '/frag', 'core.nextents'))).toBeGreaterThan(21);
});

test('stat, timestamps, symlinks, devices and extents match xfs_db', async () => {
  await withFs(image, async (fsys) => {
    const hello = await fsys.stat('/hello.txt');
    expect(hello).toMatchObject({ type: 'file', size: 11, mode: 0o640, uid: 1000, gid: 1001, nlink: 1 });
    expect(hello.inode).toBe((await xfsDbList(image, '/'))['hello.txt']);
    // mkfs stamps the time it ran; bigtime keeps nanoseconds, shown here to the millisecond.
    expect(hello.mtimeMs).toBeGreaterThanOrEqual(Math.floor(madeAt / 1000) * 1000);
    expect(hello.mtimeMs).toBeLessThanOrEqual(Date.now());
    expect(hello.mtimeMs % 1000).toBe(Math.floor(Number(await xfsDbField(image, '/hello.txt', 'core.mtime.nsec')) / 1e6));
    expect(await xfsDbField(image, '/hello.txt', 'v3.bigtime')).toBe('1');
    expect((await fsys.stat('/')).type).toBe('directory');
    expect((await fsys.stat('/pipe')).type).toBe('fifo');
    expect((await fsys.stat('/null')).type).toBe('char-device');
    expect(await fsys.readlink('/link-local')).toBe('hello.txt');
    expect(await xfsDbField(image, '/link-local', 'core.format')).toMatch(/^1 /);
    expect(await fsys.readlink('/link-remote')).toBe(REMOTE_LINK_TARGET);
    expect(await xfsDbField(image, '/link-remote', 'core.format')).toMatch(/^2 /);
    expect(await xfsDb(image, ['path /link-remote', 'dblock 0', 'type symlink', 'print crc'])).toMatch(/\(correct\)/);
    expect(await fsys.readlink('/deep/link-up')).toBe('../hello.txt');

    const bmap = await xfsDb(image, ['path /big.bin', 'bmap']);
    const want = [...bmap.matchAll(/data offset (\d+) startblock \d+ \(\d+\/\d+\) count (\d+) flag 0/g)]
      .map((m) => ({ offset: Number(m[1]) * 4096, length: Math.min(Number(m[2]) * 4096, 3 * MiB + 17 - Number(m[1]) * 4096) }));
    expect(want.length).toBeGreaterThan(0);
    const big = await fsys.open('/big.bin');
    expect(await big.extents()).toEqual(want);
    expect(await big.read(3 * MiB, 17)).toEqual(seededBytes('xfs', 'big', 3 * MiB + 17).subarray(3 * MiB));
    expect(await (await fsys.open('/prealloc.bin')).extents()).toEqual([]);
    expect(await (await fsys.open('/holey.bin')).extents()).toEqual([{ offset: 3 * 4096, length: 4 * 4096 }]);
    expect(await (await fsys.open('/empty')).extents()).toEqual([]);
  });
});

test('a regular file with a B+tree data fork (built as the kernel would, checked by xfs_db) reads back exactly', async () => {
  const copy = path.join(dir, 'btree-file.img');
  await fs.copyFile(image1k, copy);
  await makeBtreeFork(copy, '/big.bin', 40);
  expect(await xfsDbField(copy, '/big.bin', 'core.format')).toMatch(/^3 /);
  const bmap = await xfsDb(copy, ['path /big.bin', 'bmap']);
  const want = [...bmap.matchAll(/data offset (\d+) startblock \d+ \(\d+\/\d+\) count (\d+) flag 0/g)]
    .map((m) => ({ offset: Number(m[1]) * 1024, length: Number(m[2]) * 1024 }));
  expect(want).toHaveLength(40);
  await withFs(copy, async (fsys) => {
    const file = await fsys.open('/big.bin');
    const size = 3 * MiB + 17;
    // Our extents are merged where they touch; xfs_db lists the 40 records.
    expect(await file.extents()).toEqual([{ offset: 0, length: size }]);
    expect(want.reduce((n, e) => n + e.length, 0)).toBe(Math.ceil(size / 1024) * 1024);
    const data = Buffer.concat([await file.read(0, 2 * MiB), await file.read(2 * MiB, size - 2 * MiB)]);
    expect(sha(data)).toBe(sha(seededBytes('xfs', 'big', size)));
  });
});

test('paged listings of a node-form folder add up to the full listing', async () => {
  await withFs(image, async (fsys) => {
    const full = (await fsys.readdir('/node', { limit: 100_000 })).entries.map((e) => e.name);
    expect(full).toHaveLength(1500);
    const paged: string[] = [];
    let offset: number | null = 0;
    let pages = 0;
    while (offset !== null) {
      const page = await fsys.readdir('/node', { offset, limit: 333 });
      paged.push(...page.entries.map((e) => e.name));
      offset = page.nextOffset;
      pages++;
    }
    expect(pages).toBe(5);
    expect(paged).toEqual(full);
    expect(new Set(full).size).toBe(1500);
  });
});

test('bad paths fail with PathError codes', async () => {
  await withFs(image, async (fsys) => {
    await expect(fsys.stat('/nope')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fsys.readdir('/hello.txt')).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(fsys.stat('/hello.txt/x')).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(fsys.open('/deep')).rejects.toMatchObject({ code: 'EISDIR' });
    await expect(fsys.open('/link-local')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(fsys.open('/pipe')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(fsys.readlink('/hello.txt')).rejects.toBeInstanceOf(PathError);
    await expect(fsys.stat('/../etc')).rejects.toMatchObject({ code: 'EINVAL' });
  });
});

describe('dirty and damaged images', () => {
  let bytes: Buffer;
  let logSector: number;

  beforeAll(async () => {
    bytes = await fs.readFile(image);
    const sb = await xfsDb(image, ['sb 0', 'print logstart agblocks agblklog']);
    const field = (name: string) => Number(new RegExp(`^${name} = (\\d+)$`, 'm').exec(sb)![1]);
    const logstart = field('logstart');
    const agno = Math.floor(logstart / 2 ** field('agblklog'));
    logSector = ((agno * field('agblocks') + (logstart % 2 ** field('agblklog'))) * 4096) / 512;
  });

  const open = (b: Buffer) => openFileSystem(new BufferDisk(b));

  test('a log whose last record is a transaction, not an unmount record, needs recovery', async () => {
    const b = Buffer.from(bytes);
    // mkfs wrote one unmount record (sectors 0–1, cycle 1); append a two-operation record after it.
    const header = Buffer.alloc(512);
    header.writeUInt32BE(0xfeedbabe, 0);
    header.writeUInt32BE(1, 4);
    header.writeUInt32BE(2, 8);
    header.writeUInt32BE(512, 12);
    header.writeBigUInt64BE((1n << 32n) | 2n, 16);
    header.writeBigUInt64BE(1n << 32n, 24);
    header.writeUInt32BE(2, 40);
    header.writeUInt32BE(32768, 320);
    header.copy(b, (logSector + 2) * 512);
    b.writeUInt32BE(1, (logSector + 3) * 512);
    const fsys = await open(b);
    expect(fsys.dirty).toBe(true);
    expect(fsys.warnings.join()).toMatch(/log needs recovery.*2 operations/);
    expect((await fsys.readdir('/sf')).entries).toHaveLength(4);
    const clean = await open(Buffer.from(bytes));
    expect(clean.dirty).toBe(false);
  });

  test('an unfinished mkfs (sb_inprogress, set by xfs_db) is dirty', async () => {
    const copy = path.join(dir, 'inprogress.img');
    await fs.copyFile(image, copy);
    await xfsDb(copy, ['sb 0', 'write inprogress 1'], true);
    const fsys = await open(await fs.readFile(copy));
    expect(fsys.dirty).toBe(true);
    expect(fsys.warnings.join()).toMatch(/inprogress/);
  });

  test('damaged structures fail with FileSystemError naming the structure and offset', async () => {
    const sbBad = Buffer.from(bytes);
    sbBad[8 * 4 + 1] ^= 0x40; // inside the UUID: only the CRC can tell
    await expect(open(sbBad)).rejects.toMatchObject({ name: 'FileSystemError', structure: 'superblock crc', offset: 224 });

    const rootIno = Number(/rootino = (\d+)/.exec(await xfsDb(image, ['sb 0', 'print rootino']))![1]);
    const rootAt = rootIno * 512; // AG 0: inode numbers are block * 8 + index, i.e. byte offset / 512
    const inodeBad = Buffer.from(bytes);
    inodeBad[rootAt + 60] ^= 1;
    await expect(open(inodeBad)).rejects.toMatchObject({ structure: `inode ${rootIno}`, offset: rootAt + 100 });

    const blockMap = await xfsDb(image, ['path /block', 'bmap']);
    const fsb = Number(/startblock (\d+)/.exec(blockMap)![1]);
    const geometry = await xfsDb(image, ['sb 0', 'print agblocks agblklog']);
    const agblocks = Number(/agblocks = (\d+)/.exec(geometry)![1]);
    const agblklog = Number(/agblklog = (\d+)/.exec(geometry)![1]);
    const linear = Math.floor(fsb / 2 ** agblklog) * agblocks + (fsb % 2 ** agblklog);
    const dirBad = Buffer.from(bytes);
    dirBad[linear * 4096 + 200] ^= 0x20;
    const fsys = await open(dirBad);
    const err = await fsys.readdir('/block').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileSystemError);
    expect(err).toMatchObject({ structure: expect.stringMatching(/^inode \d+ directory block 0$/), offset: linear * 4096 + 4 });
    expect((await fsys.readdir('/sf')).entries).toHaveLength(4);
  });

  test('a v4 (no CRC) XFS is refused as unsupported', async () => {
    const v4 = path.join(dir, 'v4.img');
    await xfsTool('mkfs.xfs', ['-q', '-f', '-m', 'crc=0', '-d', `file,name=${v4},size=32m`]);
    const err = await withFs(v4, async () => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedFileSystemError);
    expect((err as Error).message).toMatch(/version 4/);
  });
});
