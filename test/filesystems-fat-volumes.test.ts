/**
 * FAT12/16/32 reader against mkfs.fat + mcopy images, compared with mtools (`mcopy -s` back out) and sleuthkit
 * `fls`; and partition tables: GPT made by sgdisk, an MBR with an extended/logical chain and a GPT with
 * 4096-byte sectors (written by our test helper), each checked against sleuthkit `mmls`, with file systems placed
 * in the partitions and read through listVolumes → openFileSystem. Damaged tables fail with typed errors.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRaw } from '@vmkeep/disk-formats';
import { BufferDisk, Disk } from '@vmkeep/disk';
import { FileSystemError, listVolumes, openFileSystem } from '@vmkeep/filesystems';
import {
  buildFatTree, flsListing, makeExt, makeFat, MiB, placeImage, run, walkFileSystem, walkHostTree, writeGpt, writeMbr,
} from './peers/fs-images';

let dir: string;
let fatTree: string;
let extImage: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-fat-'));
  fatTree = path.join(dir, 'fat-tree');
  await buildFatTree(fatTree);
  const extTree = path.join(dir, 'ext-tree');
  await fs.mkdir(path.join(extTree, 'etc'), { recursive: true });
  await fs.writeFile(path.join(extTree, 'etc', 'hostname'), 'vmkeep-guest\n');
  extImage = await makeExt(path.join(dir, 'ext.img'), extTree, { type: 'ext4', blockSize: 4096, sizeMiB: 16 });
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe.each([
  [12, 8, undefined],
  [16, 48, undefined],
  [32, 80, 1],
] as const)('FAT%d', (bits, sizeMiB, spc) => {
  let image: string;
  let extracted: string;

  beforeAll(async () => {
    image = await makeFat(path.join(dir, `fat${bits}.img`), fatTree, bits, sizeMiB, spc);
    extracted = path.join(dir, `fat${bits}-out`);
    await fs.mkdir(extracted);
    await run('mcopy', ['-s', '-n', '-Q', '-i', image, '::*', extracted]);
  });

  test('the whole tree equals what mcopy extracts and the tree it was made from', async () => {
    const disk = await openRaw(image);
    try {
      const fsys = await openFileSystem(disk);
      expect(fsys.type).toBe(`fat${bits}`);
      expect(fsys.label).toBe(`VMKEEP${bits}`);
      expect(fsys.uuid).toBe('1234-ABCD');
      expect(fsys.dirty).toBe(false);
      expect(fsys.size).toBe(sizeMiB * MiB);
      const ours = await walkFileSystem(fsys);
      expect(Object.keys(ours).length).toBeGreaterThan(300);
      expect(ours).toEqual(await walkHostTree(extracted));
      expect(ours).toEqual(await walkHostTree(fatTree));
      // Names are matched case-insensitively, as FAT does.
      expect((await fsys.stat('/readme.txt')).size).toBe(20);
      await expect(fsys.readlink('/README.TXT')).rejects.toMatchObject({ code: 'EINVAL' });
      // FAT has no holes: the extents of a file cover all of it.
      const big = await fsys.open('/big.bin');
      const extents = await big.extents();
      expect(extents[0].offset).toBe(0);
      expect(extents.reduce((n, e) => n + e.length, 0)).toBe(big.size);
    } finally {
      await disk.close();
    }
  });

  test('listing equals sleuthkit fls (long names included)', async () => {
    const disk = await openRaw(image);
    try {
      const ours = await walkFileSystem(await openFileSystem(disk));
      const kinds: Record<string, string> = { directory: 'd', file: 'r' };
      expect(Object.fromEntries(Object.entries(ours).map(([p, e]) => [p, kinds[e.type]]))).toEqual(await flsListing(image));
    } finally {
      await disk.close();
    }
  });

  test('an unclean shutdown is reported and a looping cluster chain is a typed error', async () => {
    const bytes = await fs.readFile(image);
    const boot = bytes.subarray(0, 512);
    const fatOffset = boot.readUInt16LE(14) * boot.readUInt16LE(11);
    if (bits !== 12) {
      const dirty = Buffer.from(bytes);
      if (bits === 16) dirty.writeUInt16LE(dirty.readUInt16LE(fatOffset + 2) & ~0x8000, fatOffset + 2);
      else dirty.writeUInt32LE(dirty.readUInt32LE(fatOffset + 4) & ~0x08000000, fatOffset + 4);
      const fsys = await openFileSystem(new BufferDisk(dirty));
      expect(fsys.dirty).toBe(true);
      expect(fsys.warnings.join()).toMatch(/clean-shutdown bit/);
    }
    // Point big.bin's second cluster back at its first: the chain loops.
    const fsys = await openFileSystem(new BufferDisk(Buffer.from(bytes)));
    const first = (await fsys.stat('/big.bin')).inode;
    const looped = Buffer.from(bytes);
    if (bits === 32) looped.writeUInt32LE(first, fatOffset + first * 4);
    else if (bits === 16) looped.writeUInt16LE(first, fatOffset + first * 2);
    else {
      const at = fatOffset + Math.floor(first * 1.5);
      const v = looped.readUInt16LE(at);
      looped.writeUInt16LE(first & 1 ? (v & 0x000f) | (first << 4) : (v & 0xf000) | first, at);
    }
    const broken = await openFileSystem(new BufferDisk(looped));
    const err = await broken.open('/big.bin').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileSystemError);
    expect(String((err as Error).message)).toMatch(/cluster chain/);
  });
});

interface MmlsRow {
  start: number;
  length: number;
  description: string;
}

async function mmls(image: string, args: string[] = []): Promise<MmlsRow[]> {
  const text = await run('mmls', [...args, image]);
  return text.split('\n').map((l) => /^\d+:\s+\d+(?::\d+)?\s+(\d+)\s+\d+\s+(\d+)\s+(.*)$/.exec(l)).filter((m): m is RegExpExecArray => !!m)
    .map((m) => ({ start: Number(m[1]), length: Number(m[2]), description: m[3].trim() }));
}

async function readHostname(volume: Disk): Promise<string> {
  const fsys = await openFileSystem(volume);
  const f = await fsys.open('/etc/hostname');
  return (await f.read(0, f.size)).toString();
}

describe('partition tables', () => {
  test('GPT made by sgdisk: volumes equal mmls and sgdisk, file systems read through the partitions', async () => {
    const disk = path.join(dir, 'gpt.img');
    await fs.writeFile(disk, '');
    await fs.truncate(disk, 64 * MiB);
    await run('sgdisk', [
      '-n', '1:2048:+16M', '-t', '1:8300', '-c', '1:linux root', '-u', '1:11111111-2222-4333-8444-555555555555',
      '-n', '2:0:+16M', '-t', '2:0700', '-c', '2:données',
      disk,
    ]);
    await placeImage(disk, 2048 * 512, extImage);
    const fat = await makeFat(path.join(dir, 'part-fat.img'), fatTree, 16, 16);
    const raw = await openRaw(disk);
    try {
      const result = await listVolumes(raw);
      expect(result.scheme).toBe('gpt');
      expect(result.sectorSize).toBe(512);
      expect(result.warnings).toEqual([]);
      const rows = (await mmls(disk)).filter((r) => !/^(Unallocated|Safety Table|GPT Header|Partition Table)$/.test(r.description));
      expect(result.volumes.map((v) => ({ start: v.start / 512, length: v.size / 512, description: v.name }))).toEqual(rows);
      const [root, data] = result.volumes;
      expect(root).toMatchObject({ index: 1, type: '0fc63daf-8483-4772-8e79-3d69d8477de4', guid: '11111111-2222-4333-8444-555555555555', name: 'linux root' });
      expect(data).toMatchObject({ index: 2, type: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', name: 'données' });
      expect(await run('sgdisk', ['-i', '2', disk])).toContain(`Partition unique GUID: ${data.guid.toUpperCase()}`);
      expect(await readHostname(root)).toBe('vmkeep-guest\n');
    } finally {
      await raw.close();
    }
    await placeImage(disk, 2048 * 512 + 16 * MiB, fat);
    const again = await openRaw(disk);
    try {
      const volumes = (await listVolumes(again)).volumes;
      expect(await walkFileSystem(await openFileSystem(volumes[1]))).toEqual(await walkHostTree(fatTree));
    } finally {
      await again.close();
    }
  });

  test('GPT: a damaged primary falls back to the backup; both damaged is a typed error', async () => {
    const disk = path.join(dir, 'gpt-damaged.img');
    await fs.writeFile(disk, '');
    await fs.truncate(disk, 8 * MiB);
    await run('sgdisk', ['-n', '1:2048:+2M', '-c', '1:one', '-n', '2:0:0', '-c', '2:two', disk]);
    const bytes = await fs.readFile(disk);
    const good = await listVolumes(new BufferDisk(bytes));
    const primaryBroken = Buffer.from(bytes);
    primaryBroken[2 * 512 + 60] ^= 0xff; // a byte of the primary entry array: its CRC no longer matches
    const fallback = await listVolumes(new BufferDisk(primaryBroken));
    expect(fallback.volumes.map((v) => [v.start, v.size, v.name])).toEqual(good.volumes.map((v) => [v.start, v.size, v.name]));
    expect(fallback.warnings.join()).toMatch(/primary GPT damaged .*entry array CRC-32 mismatch.*backup GPT was used/);
    const bothBroken = Buffer.from(primaryBroken);
    bothBroken[bytes.length - 512 + 16] ^= 0xff; // the backup header's CRC
    const err = await listVolumes(new BufferDisk(bothBroken)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileSystemError);
    expect(err).toMatchObject({ structure: 'GPT header', offset: 512 });
    const backupBroken = Buffer.from(bytes);
    backupBroken[bytes.length - 512 + 16] ^= 0xff;
    expect((await listVolumes(new BufferDisk(backupBroken))).warnings.join()).toMatch(/backup GPT damaged: .*header CRC-32 mismatch/);
  });

  test('GPT with 4096-byte sectors equals mmls -b 4096', async () => {
    const disk = path.join(dir, 'gpt4k.img');
    const size = 48 * MiB;
    await fs.writeFile(disk, '');
    await fs.truncate(disk, size);
    await writeGpt(disk, size, 4096, [
      { first: 256, last: 256 + 4096 - 1, type: '0fc63daf-8483-4772-8e79-3d69d8477de4', guid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', name: 'root4k' },
      { first: 256 + 4096, last: 256 + 8192 - 1, type: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', guid: 'aaaaaaaa-bbbb-4ccc-8ddd-ffffffffffff', name: 'data4k' },
    ]);
    await placeImage(disk, 256 * 4096, extImage);
    const raw = await openRaw(disk);
    try {
      const result = await listVolumes(raw);
      expect(result).toMatchObject({ scheme: 'gpt', sectorSize: 4096, warnings: [] });
      const rows = (await mmls(disk, ['-b', '4096', '-t', 'gpt'])).filter((r) => /4k$/.test(r.description));
      expect(result.volumes.map((v) => ({ start: v.start / 4096, length: v.size / 4096, description: v.name }))).toEqual(rows);
      expect(rows).toHaveLength(2);
      expect(await readHostname(result.volumes[0])).toBe('vmkeep-guest\n');
    } finally {
      await raw.close();
    }
  });

  test('MBR with an extended partition and logical partitions equals mmls', async () => {
    const disk = path.join(dir, 'mbr.img');
    await fs.writeFile(disk, '');
    await fs.truncate(disk, 96 * MiB);
    const S = 2048;
    await writeMbr(
      disk,
      [{ type: 0x83, start: S, sectors: 16 * S }, { type: 0x05, start: 17 * S, sectors: 60 * S }, { type: 0x0c, start: 80 * S, sectors: 8 * S }],
      [{ type: 0x83, start: 18 * S, sectors: 16 * S }, { type: 0x06, start: 35 * S, sectors: 16 * S }, { type: 0x83, start: 52 * S, sectors: 8 * S }],
    );
    await placeImage(disk, 18 * S * 512, extImage);
    const fat = await makeFat(path.join(dir, 'logical-fat.img'), fatTree, 16, 16);
    await placeImage(disk, 35 * S * 512, fat);
    const bytes = await fs.readFile(disk);
    const result = await listVolumes(new BufferDisk(bytes));
    expect(result.scheme).toBe('mbr');
    expect(result.volumes.map((v) => [v.index, v.type])).toEqual([[1, '0x83'], [3, '0x0c'], [5, '0x83'], [6, '0x06'], [7, '0x83']]);
    const rows = (await mmls(disk, ['-t', 'dos'])).filter((r) => !/Unallocated|Table|Extended/.test(r.description));
    const byStart = (a: { start: number }, b: { start: number }) => a.start - b.start;
    expect(result.volumes.map((v) => ({ start: v.start / 512, length: v.size / 512 })).sort(byStart)).toEqual(rows.map((r) => ({ start: r.start, length: r.length })).sort(byStart));
    expect(await readHostname(result.volumes[2])).toBe('vmkeep-guest\n');
    expect(await walkFileSystem(await openFileSystem(result.volumes[3]))).toEqual(await walkHostTree(fatTree));

    // An EBR chain that loops back to its first EBR, and a logical partition leaving the extended one.
    const looped = Buffer.from(bytes);
    const lastEbr = (52 * S - 2048) * 512;
    looped[lastEbr + 446 + 16 + 4] = 0x05;
    looped.writeUInt32LE(0, lastEbr + 446 + 16 + 8 + 0);
    looped.writeUInt32LE(1, lastEbr + 446 + 16 + 8);
    looped.writeUInt32LE(S, lastEbr + 446 + 16 + 12);
    const loopErr = await listVolumes(new BufferDisk(looped)).catch((e: unknown) => e);
    expect(loopErr).toMatchObject({ name: 'FileSystemError', structure: 'extended boot record' });
    const selfLoop = Buffer.from(bytes);
    selfLoop.writeUInt32LE(52 * S - 2048 - 17 * S, lastEbr + 446 + 16 + 8);
    selfLoop[lastEbr + 446 + 16 + 4] = 0x05;
    selfLoop.writeUInt32LE(8 * S, lastEbr + 446 + 16 + 12);
    await expect(listVolumes(new BufferDisk(selfLoop))).rejects.toThrow(/the EBR chain loops/);
    const outside = Buffer.from(bytes);
    outside.writeUInt32LE(100 * S, (17 * S) * 512 + 446 + 12);
    await expect(listVolumes(new BufferDisk(outside))).rejects.toMatchObject({ structure: 'logical partition 5' });
  });

  test('a disk without a partition table is one volume; a FAT boot sector is not mistaken for an MBR', async () => {
    const extDisk = await openRaw(extImage);
    const ext = await listVolumes(extDisk);
    await extDisk.close();
    expect(ext).toMatchObject({ scheme: 'none' });
    expect(ext.volumes).toHaveLength(1);
    expect(ext.volumes[0]).toMatchObject({ index: 0, start: 0, type: 'none' });
    const fat = await listVolumes(new BufferDisk(await fs.readFile(path.join(dir, 'fat12.img'))));
    expect(fat.scheme).toBe('none');
    expect((await openFileSystem(fat.volumes[0])).type).toBe('fat12');
  });
});

