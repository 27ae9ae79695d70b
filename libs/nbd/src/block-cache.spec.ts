import { BufferDisk, type Disk } from '@vmkeep/disk';
import { BlockCache } from './block-cache';

const KiB = 1024;

/** A BufferDisk that counts reads and can fail them. */
function counted(data: Buffer): Disk & { reads: Array<[number, number]>; failNext: boolean } {
  const inner = new BufferDisk(data);
  const disk = {
    reads: [] as Array<[number, number]>,
    failNext: false,
    size: inner.size,
    extents: () => inner.extents(),
    close: () => inner.close(),
    read: async (offset: number, length: number) => {
      disk.reads.push([offset, length]);
      if (disk.failNext) {
        disk.failNext = false;
        throw new Error('read failed');
      }
      return inner.read(offset, length);
    },
  };
  return disk;
}

describe('BlockCache', () => {
  const data = Buffer.alloc(40 * KiB + 100);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;

  it('returns the exact bytes for reads inside, across and at the end of blocks', async () => {
    const cache = new BlockCache(counted(data), { blockSize: 4 * KiB, readAheadBlocks: 0 });
    for (const [offset, length] of [[0, 10], [4090, 20], [1000, 20 * KiB], [data.length - 150, 150], [8 * KiB, 4 * KiB]]) {
      expect((await cache.read(offset, length)).equals(data.subarray(offset, offset + length))).toBe(true);
    }
  });

  it('loads a block once for concurrent readers and keeps at most maxBytes', async () => {
    const disk = counted(data);
    const cache = new BlockCache(disk, { blockSize: 4 * KiB, maxBytes: 8 * KiB, readAheadBlocks: 0 });
    await Promise.all([cache.read(0, 512), cache.read(512, 512), cache.read(4000, 96)]);
    expect(disk.reads).toEqual([[0, 4 * KiB]]);
    await cache.read(8 * KiB, 10); // blocks 0 and 2 cached (max 2)
    await cache.read(12 * KiB, 10); // evicts block 0
    await cache.read(0, 10);
    expect(disk.reads.filter(([o]) => o === 0)).toHaveLength(2);
  });

  it('never evicts a block still loading', async () => {
    const disk = counted(data);
    const slow: Disk = { ...disk, read: async (o, l) => (await new Promise((r) => setTimeout(r, 20)), disk.read(o, l)) };
    const cache = new BlockCache(slow, { blockSize: 4 * KiB, maxBytes: 8 * KiB, readAheadBlocks: 0 });
    const first = [cache.read(0, 10), cache.read(4 * KiB, 10), cache.read(8 * KiB, 10)];
    const again = cache.read(0, 10); // block 0 is the oldest, but still loading
    await Promise.all([...first, again]);
    expect(disk.reads.filter(([o]) => o === 0)).toHaveLength(1);
  });

  it('loads ahead of a sequential reader', async () => {
    const disk = counted(data);
    const cache = new BlockCache(disk, { blockSize: 4 * KiB, readAheadBlocks: 2 });
    await cache.read(0, 4 * KiB);
    await cache.read(4 * KiB, 4 * KiB);
    // Highest first: a source's own sequential read-ahead must not fire behind the cache.
    expect(disk.reads.map(([o]) => o / (4 * KiB))).toEqual([0, 1, 3, 2]);
  });

  it('does not keep a failed read', async () => {
    const disk = counted(data);
    const cache = new BlockCache(disk, { blockSize: 4 * KiB });
    disk.failNext = true;
    await expect(cache.read(0, 10)).rejects.toThrow('read failed');
    expect((await cache.read(0, 10)).equals(data.subarray(0, 10))).toBe(true);
  });
});
