/**
 * exFAT reader against an image made by mkfs.exfat, filled by our test helper and passed by `fsck.exfat -n`:
 * the tree equals its source, the listing equals sleuthkit `fls`, files equal `icat`; contiguous and FAT-chained
 * files, multi-cluster folders, long and non-ASCII names, timestamps with 10 ms and UTC offset; a damaged entry
 * set or a looping chain is a typed error; the VolumeDirty flag is reported.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRaw } from '@vmkeep/disk-formats';
import { BufferDisk } from '@vmkeep/disk';
import { FileSystemError, openFileSystem } from '@vmkeep/filesystems';
import { buildFatTree, flsListing, makeExfat, run, walkFileSystem, walkHostTree } from './peers/fs-images';

let dir: string;
let tree: string;
let image: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-exfat-'));
  tree = path.join(dir, 'tree');
  await buildFatTree(tree);
  image = await makeExfat(path.join(dir, 'exfat.img'), tree, 64);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

test('the tree equals its source, the listing equals fls and files equal icat', async () => {
  const disk = await openRaw(image);
  try {
    const fsys = await openFileSystem(disk);
    expect(fsys).toMatchObject({ type: 'exfat', label: 'VMKEEPX', dirty: false, size: 64 * 1024 * 1024 });
    const serial = /Volume Serial:\s+0x([0-9a-f]+)/.exec(await run('dump.exfat', [image]))![1].toUpperCase().padStart(8, '0');
    expect(fsys.uuid).toBe(`${serial.slice(0, 4)}-${serial.slice(4)}`);
    const ours = await walkFileSystem(fsys);
    expect(ours).toEqual(await walkHostTree(tree));
    const kinds: Record<string, string> = { directory: 'd', file: 'r' };
    expect(Object.fromEntries(Object.entries(ours).map(([p, e]) => [p, kinds[e.type]]))).toEqual(await flsListing(image));
    const fls = await run('fls', ['-r', '-p', '-u', image]);
    for (const name of ['big.bin', 'A long file name with spaces.text', 'many/file-number-0123.txt']) {
      const inode = new RegExp(`^r/r (\\d+):\\t${name.replace(/[.]/g, '\\.')}$`, 'm').exec(fls)![1];
      const icat = await run('bash', ['-c', `icat ${image} ${inode} | sha256sum`]);
      expect({ name, sha: ours[`/${name}`].sha256 }).toEqual({ name, sha: icat.split(' ')[0] });
    }
    // Timestamps: 2024-05-06 07:08:10 local + 0.5 s, at UTC+1 (as our helper wrote them).
    expect(new Date((await fsys.stat('/README.TXT')).mtimeMs).toISOString()).toBe('2024-05-06T06:08:10.500Z');
    expect((await fsys.readdir('/many', { offset: 290, limit: 50 })).entries).toHaveLength(10);
    expect((await fsys.stat('/readme.txt')).size).toBe(20);
    const big = await fsys.open('/big.bin');
    expect(createHash('sha256').update(await big.read(0, big.size)).digest('hex')).toBe(ours['/big.bin'].sha256);
  } finally {
    await disk.close();
  }
});

test('damaged entry sets, looping chains and the dirty flag', async () => {
  const bytes = await fs.readFile(image);
  const fsys = await openFileSystem(new BufferDisk(bytes));
  const listing = (await fsys.readdir('/')).entries;
  expect(listing.every((e) => !e.error)).toBe(true);
  // Flip a byte of README.TXT's name: its set checksum no longer matches.
  const at = bytes.indexOf(Buffer.from('README.TXT', 'utf16le'));
  const renamed = Buffer.from(bytes);
  renamed[at] ^= 0x01;
  const damaged = await openFileSystem(new BufferDisk(renamed));
  const entry = (await damaged.readdir('/')).entries.find((e) => e.name === 'SEADME.TXT');
  expect(entry).toMatchObject({ stat: { type: 'unknown' }, error: expect.stringMatching(/entry set checksum mismatch/) });
  await expect(damaged.open('/SEADME.TXT')).rejects.toBeInstanceOf(FileSystemError);

  // Point the FAT entry of a chained folder's first cluster at itself.
  const bps = 2 ** bytes[108];
  const fatOff = bytes.readUInt32LE(80) * bps;
  const many = (await fsys.stat('/many')).inode;
  const looped = Buffer.from(bytes);
  looped.writeUInt32LE(many, fatOff + many * 4);
  const err = await (await openFileSystem(new BufferDisk(looped))).readdir('/many').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(FileSystemError);
  expect(String((err as Error).message)).toMatch(/cluster chain/);

  const dirty = Buffer.from(bytes);
  dirty.writeUInt16LE(dirty.readUInt16LE(106) | 2, 106);
  const dirtyFs = await openFileSystem(new BufferDisk(dirty));
  expect(dirtyFs.dirty).toBe(true);
  expect(dirtyFs.warnings.join()).toMatch(/dirty/);
});
