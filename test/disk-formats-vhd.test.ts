/**
 * VHD and VHDX readers against qemu-img: images written by qemu-img from a raw disk of random and zero runs
 * must read back byte-exact (as `qemu-img convert -O raw` reads them) with extents matching `qemu-img map`;
 * differencing disks (qemu cannot write them) are hand-built and checked against first principles.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DiskFormatError, ImageDisk, MissingFileError, openImage, openVhd, openVhdx, detectFormat } from '@vmkeep/disk-formats';
import { buildRandomZeroImage, seededBytes } from './peers/disk-images';
import {
  batIndex, makeVhdDifferencing, makeVhdxDifferencing, MiB, qemuDataExtents, qemuImg, qemuRaw, readBat, sha, vhdxLayout,
} from './peers/vhd-fixtures';

let dir: string;
let raw: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-vhd-'));
  raw = (await buildRandomZeroImage({ dir, sizeMiB: 24, seed: 'vhd' })).path;
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function readAll(disk: ImageDisk): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < disk.size; at += 3 * MiB + 512) parts.push(await disk.read(at, Math.min(3 * MiB + 512, disk.size - at)));
  return Buffer.concat(parts);
}

/** Everything outside the extents must read as zeros, and extents must be sorted and disjoint. */
async function checkExtentsCover(disk: ImageDisk, data: Buffer): Promise<void> {
  const extents = await disk.extents();
  let end = 0;
  for (const e of extents) {
    expect(e.offset).toBeGreaterThanOrEqual(end);
    expect(data.subarray(end, e.offset).every((b) => b === 0)).toBe(true);
    end = e.offset + e.length;
  }
  expect(end).toBeLessThanOrEqual(disk.size);
  expect(data.subarray(end).every((b) => b === 0)).toBe(true);
}

/**
 * Allocated ranges from the VHDX BAT read by the fixture code (qemu's vhdx driver has no block status:
 * `qemu-img map` calls every byte data, so it cannot be the reference here).
 */
function batExtents(file: Buffer): Array<{ offset: number; length: number }> {
  const layout = vhdxLayout(file);
  const out: Array<{ offset: number; length: number }> = [];
  for (let b = 0; b * layout.blockSize < layout.virtualSize; b++) {
    if (readBat(file, layout, batIndex(layout, b)).state !== 6) continue;
    const offset = b * layout.blockSize;
    const length = Math.min(layout.blockSize, layout.virtualSize - offset);
    const last = out[out.length - 1];
    if (last && last.offset + last.length === offset) last.length += length;
    else out.push({ offset, length });
  }
  return out;
}

async function convert(name: string, format: 'vpc' | 'vhdx', options: string): Promise<string> {
  const out = path.join(dir, name);
  await qemuImg('convert', '-f', 'raw', '-O', format, ...(options ? ['-o', options] : []), raw, out);
  return out;
}

describe('qemu-written images read back byte-exact', () => {
  const cases: Array<[string, 'vpc' | 'vhdx', string, string, string]> = [
    ['fixed.vhd', 'vpc', 'subformat=fixed', 'vhd', 'fixed'],
    ['dynamic.vhd', 'vpc', 'subformat=dynamic', 'vhd', 'dynamic'],
    ['dynamic.vhdx', 'vhdx', 'subformat=dynamic', 'vhdx', 'dynamic'],
    ['dynamic-1m.vhdx', 'vhdx', 'subformat=dynamic,block_size=1M', 'vhdx', 'dynamic'],
    ['dynamic-32m.vhdx', 'vhdx', 'subformat=dynamic,block_size=32M', 'vhdx', 'dynamic'],
    ['fixed.vhdx', 'vhdx', 'subformat=fixed,block_size=2M', 'vhdx', 'fixed'],
  ];
  it.each(cases)('%s', async (name, qfmt, options, format, subformat) => {
    const file = await convert(name, qfmt, options);
    const want = await qemuRaw(file, qfmt);
    expect(await detectFormat(file)).toBe(format);
    const disk = await openImage(file);
    try {
      expect(disk.size).toBe(want.length);
      expect(disk.info).toMatchObject({ format, subformat, virtualSize: want.length, parents: [], warnings: [] });
      const got = await readAll(disk);
      expect(sha(got)).toBe(sha(want));
      // Unaligned reads that straddle blocks.
      for (const [at, len] of [[1, 4095], [2 * MiB - 700, 1400], [want.length - 513, 513], [5 * MiB + 3, 9 * MiB]]) {
        expect((await disk.read(at, len)).equals(want.subarray(at, at + len))).toBe(true);
      }
      await checkExtentsCover(disk, want);
      expect(await disk.extents()).toEqual(qfmt === 'vpc' ? await qemuDataExtents(file, qfmt) : batExtents(await fs.readFile(file)));
    } finally {
      await disk.close();
    }
  });

  it('dynamic VHD leaves zero regions unallocated and reports allocated bytes', async () => {
    const file = await convert('alloc.vhd', 'vpc', 'subformat=dynamic');
    const disk = await openVhd(file);
    try {
      const extents = await disk.extents();
      const covered = extents.reduce((n, e) => n + e.length, 0);
      expect(covered).toBeLessThan(disk.size);
      expect(disk.info.allocatedBytes).toBe(covered);
      expect(disk.info.metadata).toMatchObject({ blockSize: 2 * MiB, creatorApp: 'qemu' });
      await expect(disk.read(disk.size - 10, 11)).rejects.toThrow(/past the end/);
    } finally {
      await disk.close();
    }
  });
});

describe('differencing disks (hand-built)', () => {
  it('VHD: sector bitmaps pick child or parent, an unallocated block reads the parent', async () => {
    const parentFile = await convert('base.vhd', 'vpc', 'subformat=dynamic');
    const childRaw = path.join(dir, 'child-src.raw');
    await fs.writeFile(childRaw, seededBytes('vhd-child', 'data', 24 * MiB));
    const childQemu = path.join(dir, 'child-qemu.vhd');
    await qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic', childRaw, childQemu);
    const child = await fs.readFile(childQemu);
    const built = makeVhdDifferencing(
      child, await qemuRaw(childQemu, 'vpc'), await fs.readFile(parentFile), await qemuRaw(parentFile, 'vpc'), 'base.vhd',
      { partialBlocks: 3, absentBlock: 5 },
    );
    const childFile = path.join(dir, 'child.vhd');
    await fs.writeFile(childFile, built.image);
    expect(await detectFormat(childFile)).toBe('vhd');
    const disk = await openImage(childFile);
    try {
      expect(disk.info.subformat).toBe('differencing');
      expect(disk.info.parents.map((p) => p.files[0])).toEqual(['base.vhd']);
      expect(sha(await readAll(disk))).toBe(sha(built.expected));
      await checkExtentsCover(disk, built.expected);
    } finally {
      await disk.close();
    }

    // The parent must be the one the child was made from.
    const other = await convert('other.vhd', 'vpc', 'subformat=dynamic');
    const moved = path.join(dir, 'moved');
    await fs.mkdir(moved);
    await fs.copyFile(childFile, path.join(moved, 'child.vhd'));
    await expect(openVhd(path.join(moved, 'child.vhd'))).rejects.toBeInstanceOf(MissingFileError);
    await fs.copyFile(other, path.join(moved, 'base.vhd'));
    await expect(openVhd(path.join(moved, 'child.vhd'))).rejects.toThrow(/unique id/);
  });

  it('VHDX: PARTIALLY_PRESENT, ZERO and NOT_PRESENT blocks over a parent', async () => {
    const parentFile = await convert('base.vhdx', 'vhdx', 'block_size=1M');
    const childRaw = path.join(dir, 'child-src.raw');
    await fs.writeFile(childRaw, seededBytes('vhdx-child', 'data', 24 * MiB));
    const childQemu = path.join(dir, 'child-qemu.vhdx');
    await qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', childRaw, childQemu);
    const parts = [await fs.readFile(childQemu), await qemuRaw(childQemu, 'vhdx'), await fs.readFile(parentFile), await qemuRaw(parentFile, 'vhdx')] as const;
    const built = makeVhdxDifferencing(...parts, 'base.vhdx', { partialBlock: 2, zeroBlock: 3, absentBlock: 4 });
    const childFile = path.join(dir, 'child.avhdx');
    await fs.writeFile(childFile, built.image);
    const disk = await openImage(childFile);
    try {
      expect(disk.info).toMatchObject({ format: 'vhdx', subformat: 'differencing' });
      expect(disk.info.parents).toHaveLength(1);
      const got = await readAll(disk);
      expect(sha(got)).toBe(sha(built.expected));
      // Sector-granular: inside the partial block, 4 sectors from the child, 4 from the parent.
      expect((await disk.read(2 * MiB + 2048 - 100, 200)).equals(built.expected.subarray(2 * MiB + 1948, 2 * MiB + 2148))).toBe(true);
      await checkExtentsCover(disk, built.expected);
    } finally {
      await disk.close();
    }

    const wrong = makeVhdxDifferencing(...parts, 'base.vhdx', { partialBlock: 2, zeroBlock: 3, absentBlock: 4, linkage: '01234567-89ab-cdef-0123-456789abcdef' });
    const wrongFile = path.join(dir, 'wrong.avhdx');
    await fs.writeFile(wrongFile, wrong.image);
    await expect(openVhdx(wrongFile)).rejects.toThrow(/DataWriteGuid/);
  });
});

describe('openImage', () => {
  it('detects raw, and VMDK by magic and by text descriptor', async () => {
    expect(await detectFormat(raw)).toBe('raw');
    const rawDisk = await openImage(raw);
    try {
      expect(rawDisk.info.format).toBe('raw');
      expect(sha(await readAll(rawDisk))).toBe(sha(await fs.readFile(raw)));
      expect(await rawDisk.extents()).toEqual([{ offset: 0, length: 24 * MiB }]);
    } finally {
      await rawDisk.close();
    }
    const sparse = path.join(dir, 'probe.vmdk');
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', raw, sparse);
    expect(await detectFormat(sparse)).toBe('vmdk');
    const flat = path.join(dir, 'probe-flat.vmdk');
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', raw, flat);
    expect(await detectFormat(flat)).toBe('vmdk');
    const disk = await openImage(sparse);
    try {
      expect(disk.info.format).toBe('vmdk');
      expect(disk.size).toBe(24 * MiB);
    } finally {
      await disk.close();
    }
  });

  it('a file too small for any header is a (tiny) raw disk; a missing file is a typed error', async () => {
    const tiny = path.join(dir, 'tiny.img');
    await fs.writeFile(tiny, Buffer.from('hello'));
    expect(await detectFormat(tiny)).toBe('raw');
    await expect(openImage(path.join(dir, 'nope.vhd'))).rejects.toBeInstanceOf(DiskFormatError);
  });
});
