/**
 * `ExtFileSystem.preloadInodes`: listings after a bulk load of the inode tables equal the listings of a file system
 * that reads inode by inode, on ext4 (metadata_csum, 256-byte inodes, itable_unused), ext4 with gdt_csum
 * (uninit_bg) and ext2 (1 KiB blocks, 128-byte inodes, no itable_unused); a damaged inode and a damaged group
 * descriptor are left to the per-inode path (same error entry); the listing pass then reads far less; on 100
 * images with random bit flips in inode tables and descriptors both paths give the same listings or errors; a
 * file system of millions of mostly unused inodes is preloaded (only the used part of each table is held).
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BufferDisk, type Disk } from '@vmkeep/disk';
import { openRaw } from '@vmkeep/disk-formats';
import type { DirEntry } from '../types';
import { ExtFileSystem } from './ext';

const exec = promisify(execFile);
let dir: string;
let tree: string;

/** A Disk counting the bytes read through it. */
class CountingDisk implements Disk {
  bytes = 0;
  constructor(private readonly inner: Disk) {}
  get size(): number {
    return this.inner.size;
  }
  read(offset: number, length: number): Promise<Buffer> {
    this.bytes += length;
    return this.inner.read(offset, length);
  }
  extents() {
    return this.inner.extents();
  }
  close() {
    return this.inner.close();
  }
}

/** Every folder's full listing (readdir), depth first. */
async function listAll(fsys: ExtFileSystem): Promise<Record<string, DirEntry[]>> {
  const out: Record<string, DirEntry[]> = {};
  const visit = async (p: string) => {
    const { entries } = await fsys.readdir(p, { limit: 100_000 });
    out[p] = entries;
    for (const e of entries) if (e.stat.type === 'directory' && !e.error) await visit(`${p === '/' ? '' : p}/${e.name}`);
  };
  await visit('/');
  return out;
}

async function image(name: string, args: string[]): Promise<Buffer> {
  const file = path.join(dir, `${name}.img`);
  await exec('mke2fs', ['-q', '-F', ...args, '-d', tree, file, '24M']);
  return fs.readFile(file);
}

const debugfsImap = async (img: Buffer, p: string) => {
  const file = path.join(dir, 'probe.img');
  await fs.writeFile(file, img);
  const out = (await exec('debugfs', ['-R', `imap ${p}`, file])).stdout;
  const m = /Inode (\d+) .*\n.*located at block (\d+), offset (0x[0-9a-f]+)/.exec(out)!;
  return { ino: Number(m[1]), block: Number(m[2]), offset: Number(m[3]) };
};

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-ext-preload-'));
  tree = path.join(dir, 'tree');
  for (let d = 0; d < 6; d++) {
    const sub = path.join(tree, `dir-${d}`, 'inner');
    await fs.mkdir(sub, { recursive: true });
    for (let i = 0; i < 150; i++) await fs.writeFile(path.join(tree, `dir-${d}`, `f-${i}.txt`), i % 5 ? '' : `content ${i}\n`);
    await fs.writeFile(path.join(sub, 'deep.bin'), Buffer.alloc(70_000, d));
  }
  await fs.symlink('dir-0/f-0.txt', path.join(tree, 'link'));
  await fs.symlink(`${'long/'.repeat(30)}target`, path.join(tree, 'slow-link'));
  const stamp = new Date('2031-05-06T07:08:09.123Z');
  await fs.utimes(path.join(tree, 'dir-1', 'f-1.txt'), stamp, stamp);
}, 30_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe.each([
  ['ext4 metadata_csum', ['-t', 'ext4', '-O', 'metadata_csum,64bit', '-N', '4096']],
  ['ext4 gdt_csum', ['-t', 'ext4', '-O', '^metadata_csum,uninit_bg', '-N', '4096']],
  ['ext2 1 KiB blocks, 128-byte inodes', ['-t', 'ext2', '-b', '1024', '-I', '128']],
])('%s', (_name, args) => {
  it('lists every folder exactly as the per-inode path does, reading far less', async () => {
    const img = await image(_name.replace(/\W+/g, '-'), args);
    const plainDisk = new CountingDisk(new BufferDisk(img));
    const plain = await ExtFileSystem.open(plainDisk);
    const before = plainDisk.bytes;
    const expected = await listAll(plain);
    const plainListing = plainDisk.bytes - before;

    const disk = new CountingDisk(new BufferDisk(img));
    const fsys = await ExtFileSystem.open(disk);
    const kept = await fsys.preloadInodes();
    expect(kept).toBeGreaterThan(6 * 152);
    const afterPreload = disk.bytes;
    expect(await listAll(fsys)).toEqual(expected);
    expect(disk.bytes - afterPreload).toBeLessThan(plainListing / 2);
    expect(expected['/dir-1'].find((e) => e.name === 'f-1.txt')!.stat.mtimeMs).toBe(Date.parse('2031-05-06T07:08:09Z')) // mke2fs -d keeps seconds;
  });
});

it('holds only the in-use part of the tables: a file system of 4.2 million inodes with a few hundred used is preloaded', async () => {
  const file = path.join(dir, 'many-inodes.img');
  // 17 GiB sparse (≈ 130 MiB written): 136 groups; lazy_itable_init leaves the unused groups uninitialised.
  await exec('mke2fs', ['-q', '-F', '-t', 'ext4', '-E', 'lazy_itable_init=1', '-N', '4200000', '-d', tree, file, '17G']);
  const disk = await openRaw(file);
  try {
    const plain = await listAll(await ExtFileSystem.open(disk));
    const fsys = await ExtFileSystem.open(disk);
    expect(await fsys.preloadInodes()).toBeGreaterThan(6 * 152);
    expect(await listAll(fsys)).toEqual(plain);
  } finally {
    await disk.close();
    await fs.rm(file);
  }
});

it('leaves a damaged inode to the per-inode path: the same listing and error entry', async () => {
  const img = await image('damaged', ['-t', 'ext4', '-O', 'metadata_csum,64bit', '-N', '4096']);
  const { ino, block, offset } = await debugfsImap(img, '/dir-2/f-3.txt');
  const copy = Buffer.from(img);
  copy[block * (1024 << copy.readUInt32LE(1024 + 0x18)) + offset + 0x10] ^= 0x01; // mtime: checksum fails
  const expected = await listAll(await ExtFileSystem.open(new BufferDisk(copy)));
  const bad = expected['/dir-2'].find((e) => e.name === 'f-3.txt')!;
  expect(bad.error).toMatch(new RegExp(`inode ${ino}: checksum`));
  const fsys = await ExtFileSystem.open(new BufferDisk(copy));
  const kept = await fsys.preloadInodes();
  expect(await listAll(fsys)).toEqual(expected);

  expect(kept).toBe((await (await ExtFileSystem.open(new BufferDisk(img))).preloadInodes()) - 1);
});

it('leaves the inodes of a group whose descriptor is damaged to the per-inode path: the same listing and errors', async () => {
  // 1 KiB blocks: three groups of 400 inodes; 64-byte descriptors in block 2.
  const img = await image('groups', ['-t', 'ext4', '-b', '1024', '-O', 'metadata_csum,64bit', '-N', '1200']);
  const inodesPerGroup = img.readUInt32LE(1024 + 0x28);
  const listed = await (await ExtFileSystem.open(new BufferDisk(img))).readdir('/dir-5', { limit: 1000 });
  const victim = listed.entries.find((e) => e.stat.inode > inodesPerGroup)!;
  const group = Math.floor((victim.stat.inode - 1) / inodesPerGroup);
  const copy = Buffer.from(img);
  copy[2048 + group * 64 + 0x0c] ^= 0x01; // bg_free_blocks_count: only the checksum notices
  const expected = await listAll(await ExtFileSystem.open(new BufferDisk(copy)));
  expect(Object.values(expected).flat().filter((e) => e.error?.includes(`group descriptor ${group}`)).length).toBeGreaterThan(0);
  const fsys = await ExtFileSystem.open(new BufferDisk(copy));
  const kept = await fsys.preloadInodes();
  expect(await listAll(fsys)).toEqual(expected);
  expect(kept).toBeLessThan(await (await ExtFileSystem.open(new BufferDisk(img))).preloadInodes());
});

it('mutated inode tables and descriptors: the preloaded listing equals the per-inode one, or both fail alike', async () => {
  const img = await image('mutated', ['-t', 'ext4', '-b', '1024', '-O', 'metadata_csum,64bit', '-N', '1200']);
  const bs = 1024;
  const inodesPerGroup = img.readUInt32LE(1024 + 0x28);
  const groups = Math.ceil((img.readUInt32LE(1024 + 0x4) - 1) / img.readUInt32LE(1024 + 0x20));
  const tables = Array.from({ length: groups }, (_, g) => img.readUInt32LE(2 * bs + g * 64 + 8));
  const outcome = (p: Promise<unknown>) => p.then((v) => ({ ok: v }), (e: Error) => ({ error: `${e.name}: ${e.message}` }));
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const pristine = await outcome(ExtFileSystem.open(new BufferDisk(img)).then(listAll));
  let changed = 0;
  for (let i = 0; i < 100; i++) {
    const copy = Buffer.from(img);
    for (let k = 1 + random(3); k > 0; k--) {
      // Mostly inode table bytes (used inodes sit at the start of each table), sometimes a descriptor byte.
      const at = random(8) === 0 ? 2 * bs + random(groups * 64) : tables[random(groups)] * bs + random(inodesPerGroup * 256 / 4);
      copy[at] ^= 1 << random(8);
    }
    const plain = await outcome(ExtFileSystem.open(new BufferDisk(copy)).then(listAll));
    const preloaded = await outcome(
      ExtFileSystem.open(new BufferDisk(copy)).then(async (fsys) => {
        await fsys.preloadInodes();
        return listAll(fsys);
      }),
    );
    expect(preloaded).toEqual(plain);
    if (JSON.stringify(plain) !== JSON.stringify(pristine)) changed++;
  }
  // The damage showed (errors, other stats) in a good share of the cases.
  expect(changed).toBeGreaterThan(20);
});
