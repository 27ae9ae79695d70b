import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BufferDisk, DiskError, mergeExtents, OverlayDisk, subtractExtents, type Disk } from './index';

const KiB = 1024;

/** A base whose extents are known (data in [16K, 48K) and [100K, 110K)) and that counts writes (there are none). */
function base(): { disk: Disk; data: Buffer } {
  const data = Buffer.alloc(128 * KiB);
  for (let i = 16 * KiB; i < 48 * KiB; i++) data[i] = (i % 250) + 1;
  data.fill(9, 100 * KiB, 110 * KiB);
  const inner = new BufferDisk(data);
  const disk: Disk = {
    size: data.length,
    read: (o, l) => inner.read(o, l),
    extents: async () => [
      { offset: 16 * KiB, length: 32 * KiB },
      { offset: 100 * KiB, length: 10 * KiB },
    ],
    close: async () => undefined,
  };
  return { disk, data: Buffer.from(data) };
}

describe('OverlayDisk', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-overlay-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('merges unaligned writes and zeroes with the base, never touching the base', async () => {
    const { disk, data } = base();
    const overlay = await OverlayDisk.create(disk, path.join(dir, 's'), { blockSize: 4 * KiB });
    const expected = Buffer.from(data);
    const w1 = Buffer.alloc(10 * KiB + 3, 0xab);
    await overlay.write(18 * KiB + 5, w1);
    w1.copy(expected, 18 * KiB + 5);
    await overlay.writeZeroes(40 * KiB + 100, 20 * KiB); // partial head, whole blocks, partial tail
    expected.fill(0, 40 * KiB + 100, 60 * KiB + 100);
    await overlay.write(0, Buffer.alloc(100, 0xcd)); // partial block in a hole
    expected.fill(0xcd, 0, 100);
    await overlay.flush();
    expect((await overlay.read(0, overlay.size)).equals(expected)).toBe(true);
    expect((await overlay.read(18 * KiB, 7)).equals(expected.subarray(18 * KiB, 18 * KiB + 7))).toBe(true);
    expect((await disk.read(0, disk.size)).equals(data)).toBe(true);
    // Overlay data blocks: [0,4K), [16K,32K) (18K+5 .. 28K+8 spans 16K-32K), [40K,44K) head, [60K,64K) tail.
    expect(await overlay.extents()).toEqual([
      { offset: 0, length: 4 * KiB },
      { offset: 16 * KiB, length: 28 * KiB },
      { offset: 60 * KiB, length: 4 * KiB },
      { offset: 100 * KiB, length: 10 * KiB },
    ]);
    expect(overlay.overlayBytes).toBe(4 * KiB + 16 * KiB + 4 * KiB + 4 * KiB);
    await overlay.mergedTo(async (merged) => {
      expect((await merged.read(0, merged.size)).equals(expected)).toBe(true);
    });
    const file = overlay.dataFile;
    await overlay.close();
    expect(fs.existsSync(file)).toBe(false);
    await expect(overlay.read(0, 1)).rejects.toThrow(DiskError);
  });

  it('handles a disk whose size is not a multiple of the block size', async () => {
    const data = Buffer.alloc(10 * KiB + 7, 3);
    const overlay = await OverlayDisk.create(new BufferDisk(data), dir, { blockSize: 4 * KiB });
    await overlay.write(8 * KiB, Buffer.alloc(2 * KiB + 7, 5));
    await overlay.writeZeroes(0, 4 * KiB);
    const expected = Buffer.from(data);
    expected.fill(5, 8 * KiB);
    expected.fill(0, 0, 4 * KiB);
    expect((await overlay.read(0, overlay.size)).equals(expected)).toBe(true);
    expect(await overlay.extents()).toEqual([{ offset: 4 * KiB, length: 6 * KiB + 7 }]);
    await expect(overlay.write(10 * KiB, Buffer.alloc(8))).rejects.toThrow(DiskError);
    await overlay.close();
  });

  it('refuses bad block sizes and an existing overlay file', async () => {
    const d = new BufferDisk(Buffer.alloc(8192));
    await expect(OverlayDisk.create(d, dir, { blockSize: 3000 })).rejects.toThrow(/power of two/);
    const o = await OverlayDisk.create(d, dir);
    await expect(OverlayDisk.create(d, dir)).rejects.toThrow(/EEXIST/);
    await o.close();
  });
});

describe('extent arithmetic', () => {
  it('merges and subtracts ranges', () => {
    expect(mergeExtents([{ offset: 10, length: 5 }, { offset: 0, length: 10 }, { offset: 20, length: 1 }, { offset: 14, length: 2 }])).toEqual([
      { offset: 0, length: 16 },
      { offset: 20, length: 1 },
    ]);
    expect(subtractExtents([{ offset: 0, length: 100 }, { offset: 200, length: 10 }], [{ offset: 10, length: 10 }, { offset: 90, length: 115 }])).toEqual([
      { offset: 0, length: 10 },
      { offset: 20, length: 70 },
      { offset: 205, length: 5 },
    ]);
  });
});
