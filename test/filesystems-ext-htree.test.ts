/**
 * ext4 metadata_csum with a two-level htree folder grown the way a live system grows it: mke2fs -d makes 200
 * entries, e2fsck -fD indexes the folder, debugfs inserts 5800 more by hash, splitting leaves and growing the tree
 * to two levels. An interior index node then sits in a former leaf block and keeps that leaf's bytes: with
 * unused entry slots zero, its last 12 bytes (last entry's block, dx_tail) look like a leaf's dirent tail. The
 * reader must still check it as an index block (dx_tail), list every name debugfs lists, and report a damaged
 * interior node. Hash seed and UUID are fixed so the layout is the same on every run; e2fsck -fn says it is clean.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BufferDisk } from '@vmkeep/disk';
import { FileSystemError, openFileSystem } from '@vmkeep/filesystems';
import { run } from './peers/fs-images';

const BS = 1024;
const FIRST = 200;
const TOTAL = 6000;
const name = (i: number) => `file-${String(i).padStart(6, '0')}.txt`;

let dir: string;
let file: string;
let image: Buffer;
let ino: number;
/** Interior index nodes of /big: logical block in the folder and byte offset on the volume. */
let interior: { logical: number; at: number }[];

const debugfs = (request: string) => run('debugfs', ['-R', request, file]);

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-ext-htree-'));
  const big = path.join(dir, 'tree', 'big');
  await fs.mkdir(big, { recursive: true });
  for (let i = 0; i < FIRST; i++) await fs.writeFile(path.join(big, name(i)), '');
  file = path.join(dir, 'fs.img');
  await run('mke2fs', [
    '-q', '-F', '-t', 'ext4', '-b', String(BS), '-N', '8192', '-O', 'metadata_csum',
    '-U', '5a0c1d2e-3f40-4b51-8c62-738495a6b7c8', '-E', 'hash_seed=9e8d7c6b-5a49-4837-a625-140312f0e1d2',
    '-d', path.join(dir, 'tree'), file, '24M',
  ]);
  await run('e2fsck', ['-fyD', file], [0, 1]);
  const script = path.join(dir, 'debugfs-commands');
  const commands = ['cd /big'];
  for (let i = FIRST; i < TOTAL; i++) commands.push(`write /dev/null ${name(i)}`);
  await fs.writeFile(script, commands.join('\n') + '\n');
  await run('debugfs', ['-w', '-f', script, file]);
  await run('e2fsck', ['-fn', file]); // exit 0: clean
  image = await fs.readFile(file);

  ino = Number(/Inode: (\d+)/.exec(await debugfs('stat /big'))![1]);
  const dump = await debugfs('htree_dump /big');
  expect(dump).toMatch(/Indirect levels: 1/);
  // The root's entries (before the first blank line) point at the interior nodes.
  const root = dump.split(/\n\s*\n/)[0];
  interior = [];
  for (const m of root.matchAll(/Entry #\d+: Hash 0x[0-9a-f]+, block (\d+)/g)) {
    const logical = Number(m[1]);
    interior.push({ logical, at: Number((await debugfs(`bmap /big ${logical}`)).trim()) * BS });
  }
}, 20_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Inode 0, rec_len 12, name_len 0, file type 0xDE: what a leaf block's checksum tail looks like. */
const looksLikeDirentTail = (block: Buffer) => {
  const t = block.length - 12;
  return block.readUInt32LE(t) === 0 && block.readUInt16LE(t + 4) === 12 && block[t + 7] === 0xde;
};

test('the image has an interior index node whose last 12 bytes look like a leaf checksum tail', () => {
  expect(interior.length).toBeGreaterThanOrEqual(2);
  const lookalikes = interior.filter(({ at }) => looksLikeDirentTail(image.subarray(at, at + BS)));
  expect(lookalikes.length).toBeGreaterThan(0);
  for (const { at } of interior) {
    // A dx_node: fake entry of inode 0 spanning the block, limit (BS - 8 - 8) / 8 (room for the dx_tail).
    expect(image.readUInt32LE(at)).toBe(0);
    expect(image.readUInt16LE(at + 4)).toBe(BS);
    expect(image.readUInt16LE(at + 8)).toBe((BS - 16) / 8);
  }
});

test('listing the two-level htree folder returns every name debugfs lists (every block checksum verified)', async () => {
  const fsys = await openFileSystem(new BufferDisk(Buffer.from(image)));
  const ours = await fsys.readdir('/big', { limit: 100_000 });
  expect(ours.nextOffset).toBeNull();
  expect(ours.entries.filter((e) => e.error !== undefined || e.stat.type !== 'file')).toEqual([]);
  const theirs = (await debugfs('ls -p /big'))
    .split('\n')
    // /inode/mode/uid/gid/name/size/ — debugfs also prints the inode-0 fake entries of the index blocks.
    .map((line) => /^\/([1-9]\d*)\/\d+\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line.trim())?.[2])
    .filter((n): n is string => n !== undefined && n !== '.' && n !== '..');
  expect(theirs).toHaveLength(TOTAL);
  expect(ours.entries.map((e) => e.name).sort()).toEqual(theirs.sort());
  // Opening by name goes through the same blocks.
  expect((await fsys.stat(`/big/${name(TOTAL - 1)}`)).type).toBe('file');
});

test.each([
  ['the hash of its second dx entry', 8 + 8 + 8 + 1],
  ["the dx_tail's t_reserved (covered by the checksum)", BS - 8],
])('a flipped byte in an interior index node (%s) is reported for that block', async (_what, offset) => {
  for (const node of interior) {
    const copy = Buffer.from(image);
    copy[node.at + offset] ^= 0x40;
    const fsys = await openFileSystem(new BufferDisk(copy));
    const err = await fsys.readdir('/big', { limit: 100_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileSystemError);
    expect(err).toMatchObject({ structure: `directory ${ino} block ${node.logical}` });
    expect((err as Error).message).toMatch(/checksum \(crc32c\) of the htree index block does not match/);
  }
});
