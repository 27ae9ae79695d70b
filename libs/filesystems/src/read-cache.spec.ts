import { randomBytes } from 'node:crypto';
import { BufferDisk, type Disk } from '@vmkeep/disk';
import { ReadCacheDisk } from './read-cache';

/** Counts the reads that reach the underlying disk. */
class CountingDisk extends BufferDisk {
  reads: { offset: number; length: number }[] = [];
  closed = false;
  override async read(offset: number, length: number): Promise<Buffer> {
    this.reads.push({ offset, length });
    return super.read(offset, length);
  }
  override async close(): Promise<void> {
    this.closed = true;
  }
}

describe('ReadCacheDisk', () => {
  const data = randomBytes(10_000 + 7);
  let inner: CountingDisk;
  let disk: Disk;
  beforeEach(() => {
    inner = new CountingDisk(data);
    disk = new ReadCacheDisk(inner, { blockSize: 1024, capacityBytes: 4096, maxCachedRead: 512 });
  });

  it('returns the same bytes as the disk: inside a block, across blocks, at the end, large reads', async () => {
    for (const [offset, length] of [[0, 10], [1020, 10], [1000, 500], [10_000, 7], [9_990, 17], [100, 3000], [5, 0]]) {
      expect((await disk.read(offset, length)).equals(data.subarray(offset, offset + length))).toBe(true);
    }
    await expect(disk.read(10_000, 8)).rejects.toThrow(/past the end/);
  });

  it('serves small reads of a cached block without reading again, drops the oldest block, passes large reads', async () => {
    await disk.read(10, 20);
    await disk.read(500, 100);
    expect(inner.reads).toEqual([{ offset: 0, length: 1024 }]);
    for (const b of [1, 2, 3, 4]) await disk.read(b * 1024, 8); // capacity 4 blocks: block 0 goes
    await disk.read(0, 8);
    expect(inner.reads.filter((r) => r.offset === 0)).toHaveLength(2);
    inner.reads = [];
    await disk.read(3000, 600);
    expect(inner.reads).toEqual([{ offset: 3000, length: 600 }]);
  });

  it('gives each caller its own copy and closes the disk', async () => {
    const a = await disk.read(0, 16);
    a.fill(0);
    expect((await disk.read(0, 16)).equals(data.subarray(0, 16))).toBe(true);
    await disk.close();
    expect(inner.closed).toBe(true);
  });
});
