/**
 * ext4 metadata_csum: an image made by mke2fs -d (+ e2fsck -fD for an htree folder) opens and reads cleanly, and
 * one damaged byte in the superblock, a group descriptor, an inode, an extent block, a directory leaf block or an
 * htree index block gives a FileSystemError naming that structure (a damaged inode in a listing: its entry carries
 * the error, the rest lists). Block locations come from debugfs.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BufferDisk } from '@vmkeep/disk';
import { FileSystemError } from '../errors';
import { openFileSystem } from '../open';
import { crc32c } from '@vmkeep/disk-formats';
import { extCrc, hasDirentTail, inodeCsumOkAt, superblockCsumOk } from './checksum';

const exec = promisify(execFile);
const BS = 4096;
let dir: string;
let image: Buffer;
const debugfs = async (request: string) => (await exec('debugfs', ['-R', request, path.join(dir, 'fs.img')])).stdout;
/** First data block of a path ("blocks" lists them in logical order). */
const firstBlock = async (p: string) => Number((await debugfs(`blocks ${p}`)).trim().split(/\s+/)[0]);
const inodeOf = async (p: string) => {
  const out = await debugfs(`imap ${p}`);
  const m = /Inode (\d+) .*\n.*located at block (\d+), offset (0x[0-9a-f]+)/.exec(out)!;
  return { ino: Number(m[1]), offset: Number(m[2]) * BS + Number(m[3]) };
};
const damaged = (at: number) => {
  const copy = Buffer.from(image);
  copy[at] ^= 0x40;
  return openFileSystem(new BufferDisk(copy));
};

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-ext-csum-'));
  const tree = path.join(dir, 'tree');
  await fs.mkdir(path.join(tree, 'many'), { recursive: true });
  await fs.writeFile(path.join(tree, 'hello.txt'), 'hello, checksums\n');
  await fs.writeFile(path.join(tree, 'other.txt'), 'still listed\n');
  for (let i = 0; i < 300; i++) await fs.writeFile(path.join(tree, 'many', `entry-number-${String(i).padStart(4, '0')}`), '');
  // 40 separate 4 KiB pieces: more extents than the inode holds, so a depth-1 tree with an extent block.
  const islands = await fs.open(path.join(tree, 'islands.bin'), 'w');
  for (let i = 0; i < 40; i++) await islands.write(Buffer.alloc(BS, i + 1), 0, BS, i * 64 * 1024);
  await islands.close();
  const file = path.join(dir, 'fs.img');
  await exec('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', String(BS), '-O', 'metadata_csum,64bit', '-d', tree, file, '16M']);
  await exec('e2fsck', ['-fyD', file]).catch((e: { code?: number }) => {
    if (e.code !== 1 && e.code !== 2) throw e;
  });
  image = await fs.readFile(file);
}, 30_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

test('extCrc is the kernel ext4_chksum: raw CRC-32C register without final inversion', () => {
  const data = Buffer.from('123456789');
  expect(crc32c(data)).toBe(0xe3069283);
  expect(extCrc(0xffffffff, data)).toBe(~0xe3069283 >>> 0);
  expect(extCrc(extCrc(0xffffffff, data.subarray(0, 4)), data.subarray(4))).toBe(extCrc(0xffffffff, data));
});

test('inode checksums summed in place (zero tails skipped) equal the CRC of a copy with its checksum fields zeroed', () => {
  // Every inode size, with and without i_checksum_hi, with zero tails of every length (also none, and not multiples
  // of 8): the stored checksum computed the plain way must be accepted, and any other changed byte rejected.
  let seed = 0x9e3779b9;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  for (const size of [128, 256, 512, 1024]) {
    for (const extra of size > 128 ? [0, 2, 4, 28, 32] : [0]) {
      for (const dataEnd of [0x90, 0xa0, 0xa3, size - 17, size - 8, size]) {
        if (dataEnd > size) continue;
        const at = 13; // not aligned
        const buf = Buffer.alloc(at + size + 7);
        for (let i = 0; i < dataEnd; i++) buf[at + i] = random();
        if (size > 128) buf.writeUInt16LE(extra, at + 0x80);
        const hi = size > 128 && extra >= 4;
        const plain = Buffer.from(buf.subarray(at, at + size));
        plain.writeUInt16LE(0, 0x7c);
        if (hi) plain.writeUInt16LE(0, 0x82);
        const crc = extCrc(0x12345678, plain);
        buf.writeUInt16LE(crc & 0xffff, at + 0x7c);
        if (hi) buf.writeUInt16LE(crc >>> 16, at + 0x82);
        expect({ size, extra, dataEnd, ok: inodeCsumOkAt(0x12345678, buf, at, size) }).toEqual({ size, extra, dataEnd, ok: true });
        for (const flip of [0, 0x7b, 0x7e, 0x84, dataEnd - 1, size - 1]) {
          if (flip >= size || flip === 0x80 || flip === 0x81) continue;
          const copy = Buffer.from(buf);
          copy[at + flip] ^= 0x01;
          expect({ size, extra, flip, ok: inodeCsumOkAt(0x12345678, copy, at, size) }).toEqual({ size, extra, flip, ok: false });
        }
      }
    }
  }
});

test('hasDirentTail: only a block whose rec_len chain lands on the 12-byte tail, not one that merely ends like it', () => {
  const block = (size: number, recLens: number[]) => {
    const b = Buffer.alloc(size);
    let pos = 0;
    for (const r of recLens) {
      b.writeUInt16LE(r & 0xffff, pos + 4);
      pos += r;
    }
    // Inode 0, rec_len 12, name_len 0, file type 0xDE at the end: a leaf's tail, or stale bytes of one.
    b.writeUInt16LE(12, size - 8);
    b[size - 5] = 0xde;
    return b;
  };
  expect(hasDirentTail(block(1024, [24, 988]))).toBe(true);
  expect(hasDirentTail(block(65536, [65524]))).toBe(true);
  // An interior htree node (fake entry spanning the block) and a dx_root ("." 12, ".." the rest).
  expect(hasDirentTail(block(1024, [1024]))).toBe(false);
  expect(hasDirentTail(block(4096, [12, 4084]))).toBe(false);
  // A 64 KiB interior node stores rec_len 65536 as 0.
  expect(hasDirentTail(block(65536, [65536]))).toBe(false);
  // A damaged rec_len (0, unaligned) never reaches the tail.
  expect(hasDirentTail(block(1024, [0]))).toBe(false);
  expect(hasDirentTail(block(1024, [26, 986]))).toBe(false);
});

test('an intact metadata_csum image opens and reads (every checksum checked on the way)', async () => {
  expect(superblockCsumOk(image.subarray(1024, 2048))).toBe(true);
  const fsys = await openFileSystem(new BufferDisk(Buffer.from(image)));
  expect((await fsys.readdir('/many', { limit: 1000 })).entries).toHaveLength(300);
  const islands = await fsys.open('/islands.bin');
  expect((await islands.read(39 * 64 * 1024, 4))[0]).toBe(40);
  expect(await debugfs('stat /islands.bin')).toMatch(/\(ETB0\)/);
  expect(await debugfs('htree /many')).toMatch(/Root node dump/);
});

test.each([
  ['32-byte group descriptors (no 64bit), 1 KiB blocks, 128-byte inodes', ['-b', '1024', '-I', '128', '-O', 'metadata_csum,^64bit']],
  ['metadata_csum_seed, then a new UUID (the seed field is used, not the UUID)', ['-O', 'metadata_csum,metadata_csum_seed']],
])('%s: opens and reads with every checksum verified', async (_name, options) => {
  const file = path.join(dir, `variant-${options.length}.img`);
  await exec('mke2fs', ['-q', '-F', '-t', 'ext4', ...options, '-d', path.join(dir, 'tree'), file, '16M']);
  if (options.includes('metadata_csum,metadata_csum_seed')) await exec('tune2fs', ['-U', 'random', file]);
  const fsys = await openFileSystem(new BufferDisk(await fs.readFile(file)));
  expect((await fsys.readdir('/many', { limit: 1000 })).entries).toHaveLength(300);
  expect((await (await fsys.open('/islands.bin')).read(0, 1))[0]).toBe(1);
  await fs.rm(file);
});

test('a damaged superblock byte: the superblock checksum', async () => {
  await expect(damaged(1024 + 0x78)).rejects.toMatchObject({ name: 'FileSystemError', structure: 'superblock checksum', offset: 1024 + 0x3fc });
});

test('a damaged group descriptor byte: group descriptor 0', async () => {
  // bg_free_inodes_count_lo of group 0 (the descriptor table starts in block 1).
  const err = await damaged(BS + 0x0e).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(FileSystemError);
  expect(err).toMatchObject({ structure: 'group descriptor 0' });
  expect((err as Error).message).toMatch(/checksum \(crc32c\) does not match/);
});

test('a damaged inode byte: the inode fails by name; its folder still lists the others', async () => {
  const hello = await inodeOf('/hello.txt');
  const fsys = await damaged(hello.offset + 0x08); // i_atime
  const listing = (await fsys.readdir('/')).entries;
  expect(listing.find((e) => e.name === 'hello.txt')).toMatchObject({ stat: { type: 'unknown' }, error: expect.stringMatching(new RegExp(`inode ${hello.ino}: checksum`)) });
  expect(listing.find((e) => e.name === 'other.txt')?.error).toBeUndefined();
  await expect(fsys.open('/hello.txt')).rejects.toMatchObject({ name: 'FileSystemError', structure: `inode ${hello.ino}` });
});

test('a damaged extent block byte: the extent block of that inode', async () => {
  const { ino } = await inodeOf('/islands.bin');
  const etb = Number(/\(ETB0\):(\d+)/.exec(await debugfs('stat /islands.bin'))![1]);
  const fsys = await damaged(etb * BS + 12 + 5 * 12 + 8); // the 6th extent's start block
  await expect(fsys.open('/islands.bin')).rejects.toMatchObject({ name: 'FileSystemError', structure: `inode ${ino} extent block` });
});

test('a damaged directory leaf byte and a damaged htree index byte: that directory block', async () => {
  const root = await firstBlock('/');
  // A byte of a name in the root folder's first block (the "." entry is 12 bytes, ".." follows).
  const leaf = await damaged(root * BS + 12 + 8 + 1);
  await expect(leaf.readdir('/')).rejects.toMatchObject({ name: 'FileSystemError', structure: 'directory 2 block 0' });
  const many = await inodeOf('/many');
  const dxRoot = await firstBlock('/many');
  // The hash of the second dx entry in the dx_root (count/limit at 0x20, entries of 8 bytes).
  const index = await damaged(dxRoot * BS + 0x20 + 8 + 1);
  const err = await index.readdir('/many').catch((e: unknown) => e);
  expect(err).toMatchObject({ name: 'FileSystemError', structure: `directory ${many.ino} block 0` });
  expect((err as Error).message).toMatch(/htree index block/);
});
