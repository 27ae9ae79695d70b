/**
 * NTFS reader against images made by mkntfs and populated through ntfs-3g's userspace driver (no kernel mount),
 * compared with tools we did not write: the whole tree (names, types, sizes, bytes, symlink targets) equals what
 * ntfs-3g itself shows, listings equal sleuthkit's `fls`, single files equal `icat`. Also: alternate data streams,
 * compression, sparse extents, an attribute list, reparse points (symlink, junction) shown but not followed,
 * EFS-encrypted and deduplicated files refused, the dirty flag, and damaged records failing with typed errors.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BufferDisk } from '@vmkeep/disk';
import { openRaw } from '@vmkeep/disk-formats';
import { FileSystemError, NtfsFileStat, openFileSystem, PathError, REPARSE_TAG, UnsupportedFileSystemError } from '@vmkeep/filesystems';
import { flsListing, MiB, run, walkFileSystem, walkHostTree } from './peers/fs-images';
import { makeNtfs, withNtfsMount } from './peers/ntfs-images';

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-ntfs-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function openImage(image: string) {
  const disk = await openRaw(image);
  return { disk, fsys: await openFileSystem(disk) };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Byte offset of MFT record `n` in a fresh image (its $MFT is contiguous from the boot sector's cluster). */
function recordOffset(image: Buffer, n: number): number {
  const clusterSize = image.readUInt16LE(11) * image[13];
  return Number(image.readBigUInt64LE(0x30)) * clusterSize + n * 1024;
}

/** Offset of the value of the first attribute of `type` in the record at `rec` (fixups left as they are). */
function attributeValue(image: Buffer, rec: number, type: number): number {
  for (let at = rec + image.readUInt16LE(rec + 0x14); image.readUInt32LE(at) !== 0xffffffff; at += image.readUInt32LE(at + 4)) {
    if (image.readUInt32LE(at) === type) return at + image.readUInt16LE(at + 20);
  }
  throw new Error(`no attribute 0x${type.toString(16)}`);
}

describe.each([
  ['4 KiB clusters', 4096],
  ['512-byte clusters (records larger than a cluster)', 512],
])('%s', (title, clusterSize) => {
  let image: string;

  beforeAll(async () => {
    image = await makeNtfs(path.join(dir, `c${clusterSize}.img`), { sizeMiB: 48, clusterSize, label: 'vmkeep-ntfs' });
  });

  test('the whole tree equals what ntfs-3g shows, listings equal fls', async () => {
    const { disk, fsys } = await openImage(image);
    try {
      expect([fsys.type, fsys.label, fsys.dirty, fsys.size]).toEqual(['ntfs', 'vmkeep-ntfs', false, 48 * MiB - 512]);
      expect(fsys.uuid).toBe(Buffer.from((await fs.readFile(image)).subarray(0x48, 0x50)).reverse().toString('hex').toUpperCase());
      const ours = await walkFileSystem(fsys);
      const theirs = await withNtfsMount(image, (mnt) => walkHostTree(mnt), true);
      expect(ours).toEqual(theirs);
      expect(Object.keys(ours).length).toBeGreaterThan(1500);
      expect(ours['/link-rel']).toEqual({ type: 'symlink', target: 'hello.txt' });

      const fls = await flsListing(image);
      const named = Object.fromEntries(Object.entries(fls).filter(([p]) => !p.includes(':')));
      expect(Object.keys(named).sort()).toEqual(Object.keys(ours).sort());
      for (const [p, t] of Object.entries(named)) expect([p, t === 'd']).toEqual([p, ours[p].type === 'directory']);
    } finally {
      await disk.close();
    }
  }, 60_000);

  test('sparse, compressed and big files equal icat; sparse holes are not data extents', async () => {
    const { disk, fsys } = await openImage(image);
    try {
      for (const p of ['/sparse.img', '/compressed/words.txt', '/compressed/random.bin', '/compressed/sparse-compressed', '/big.bin', '/resident-600']) {
        const st = await fsys.stat(p);
        const icat = await run('bash', ['-c', 'icat "$1" "$2" | sha256sum', 'icat', image, String(st.inode)]);
        const file = await fsys.open(p);
        expect([p, sha(await file.read(0, file.size))]).toEqual([p, icat.slice(0, 64)]);
      }
      const sparse = (await fsys.stat('/sparse.img')) as NtfsFileStat;
      expect(sparse.ntfs.sparse).toBe(true);
      const extents = await (await fsys.open('/sparse.img')).extents();
      const dataBytes = extents.reduce((n, e) => n + e.length, 0);
      expect(dataBytes).toBeLessThan(MiB);
      expect(extents.some((e) => e.offset <= MiB + 100 && e.offset + e.length >= MiB + 5100)).toBe(true);
      const words = (await fsys.stat('/compressed/words.txt')) as NtfsFileStat;
      expect(words.ntfs.compressed).toBe(true);
      const cs = await (await fsys.open('/compressed/sparse-compressed')).extents();
      expect(cs.reduce((n, e) => n + e.length, 0)).toBeLessThan(MiB);
    } finally {
      await disk.close();
    }
  });
});

describe('streams, reparse points, refused files, dirty flag, damage', () => {
  let image: string;

  beforeAll(async () => {
    image = await makeNtfs(path.join(dir, 'special.img'), { sizeMiB: 32, clusterSize: 4096, label: 'special' });
    await withNtfsMount(image, async (mnt) => {
      const reparse = (target: string, tag: number, file: string, mkdir: boolean) =>
        run('python3', ['-c', REPARSE_PY, path.join(mnt, file), target, String(tag), mkdir ? '1' : '0']);
      await reparse('C:\\Data\\Target', REPARSE_TAG.mountPoint, 'junction', true);
      await reparse('..\\hello.txt', REPARSE_TAG.symlink, 'reparse-link', false);
      await reparse('', REPARSE_TAG.dedup, 'deduped', false);
      await fs.writeFile(path.join(mnt, 'secret'), 'not really encrypted');
    });
  }, 60_000);

  test('alternate data streams and an attribute list are listed and read', async () => {
    const { disk, fsys } = await openImage(image);
    try {
      const ads = (await fsys.stat('/ads.txt')) as NtfsFileStat;
      expect(ads.size).toBe(12);
      expect(ads.ntfs.streams.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
        { name: 'big', size: 20_000 },
        { name: 'Zone.Identifier', size: 26 },
      ]);
      const listed = (await fsys.readdir('/')).entries.find((e) => e.name === 'many-streams')!.stat as NtfsFileStat;
      expect(listed.ntfs.streams).toHaveLength(60);
      expect(await run('istat', [image, String(listed.inode)])).toContain('$ATTRIBUTE_LIST');
      const file = await fsys.open('/many-streams');
      expect((await file.read(0, file.size)).toString()).toBe('has an attribute list\n');
    } finally {
      await disk.close();
    }
  });

  test('junctions and symlink reparse points are shown, never followed', async () => {
    const { disk, fsys } = await openImage(image);
    try {
      const junction = (await fsys.stat('/junction')) as NtfsFileStat;
      expect(junction.type).toBe('symlink');
      expect(junction.ntfs.reparse).toEqual({ tag: REPARSE_TAG.mountPoint, kind: 'junction', target: 'C:\\Data\\Target' });
      expect(await fsys.readlink('/junction')).toBe('C:\\Data\\Target');
      await expect(fsys.readdir('/junction')).rejects.toMatchObject({ code: 'ENOTDIR' });
      await expect(fsys.readdir('/junction/x')).rejects.toBeInstanceOf(PathError);
      expect(await fsys.readlink('/reparse-link')).toBe('../hello.txt');
      await expect(fsys.open('/reparse-link')).rejects.toMatchObject({ code: 'EINVAL' });
    } finally {
      await disk.close();
    }
  });

  test('EFS-encrypted and deduplicated files are refused with a typed error', async () => {
    // ntfs-3g will not set FILE_ATTRIBUTE_ENCRYPTED, so it is set here in $STANDARD_INFORMATION of the record ifind names.
    const bytes = await fs.readFile(image);
    const secret = Number((await run('ifind', ['-n', '/secret', image])).trim());
    const std = attributeValue(bytes, recordOffset(bytes, secret), 0x10);
    expect(std % 512).toBeLessThan(470);
    bytes.writeUInt32LE(bytes.readUInt32LE(std + 0x20) | 0x4000, std + 0x20);
    const fsys = await openFileSystem(new BufferDisk(bytes));
    expect(((await fsys.stat('/secret')) as NtfsFileStat).ntfs.encrypted).toBe(true);
    await expect(fsys.open('/secret')).rejects.toThrow(UnsupportedFileSystemError);
    await expect(fsys.open('/secret')).rejects.toThrow(/EFS-encrypted/);
    expect(((await fsys.stat('/deduped')) as NtfsFileStat).ntfs.reparse?.tag).toBe(REPARSE_TAG.dedup);
    await expect(fsys.open('/deduped')).rejects.toThrow(/deduplicated/);
    expect((await (await fsys.open('/hello.txt')).read(0, 12)).toString()).toBe('hello, ntfs\n');
  });

  test('a dirty $Volume is reported; damaged records fail with typed errors', async () => {
    const bytes = await fs.readFile(image);
    const volInfo = attributeValue(bytes, recordOffset(bytes, 3), 0x70);
    expect(volInfo % 512).toBeLessThan(500);
    const dirty = Buffer.from(bytes);
    dirty.writeUInt16LE(dirty.readUInt16LE(volInfo + 10) | 1, volInfo + 10);
    const fsys = await openFileSystem(new BufferDisk(dirty));
    expect(fsys.dirty).toBe(true);
    expect(fsys.warnings.join()).toMatch(/dirty/);

    const torn = Buffer.from(bytes);
    torn[recordOffset(bytes, 5) + 510] ^= 0xff;
    await expect(openFileSystem(new BufferDisk(torn))).rejects.toThrow(/MFT record 5.*update sequence mismatch/);

    const badBoot = Buffer.from(bytes);
    badBoot[0x40] = 0x33;
    await expect(openFileSystem(new BufferDisk(badBoot))).rejects.toThrow(FileSystemError);
    const farMft = Buffer.from(bytes);
    farMft.writeBigUInt64LE(1n << 40n, 0x30);
    await expect(openFileSystem(new BufferDisk(farMft))).rejects.toThrow(/\$MFT cluster .* outside/);
  });
});

/** Writes a reparse point through ntfs-3g's system.ntfs_reparse_data attribute (argv: path, target, tag, mkdir). */
const REPARSE_PY = `
import os, struct, sys
p, target, tag, mk = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if mk: os.mkdir(p)
else: open(p, "w").close()
if tag == 0xA0000003 or tag == 0xA000000C:
    sub = (target if tag == 0xA000000C else "\\\\??\\\\" + target).encode("utf-16le")
    pr = target.encode("utf-16le")
    head = struct.pack("<HHHH", 0, len(sub), len(sub), len(pr))
    if tag == 0xA000000C: head += struct.pack("<I", 1)
    body = head + sub + pr
else:
    body = b"\\x01\\x00\\x00\\x00" + b"\\x00" * 12
os.setxattr(p, "system.ntfs_reparse_data", struct.pack("<IHH", tag, len(body), 0) + body)
`;
