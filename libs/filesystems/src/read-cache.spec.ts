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

  it('gives evicted blocks back to the disk and reads byte-exact while the disk reuses them', async () => {
    // The inner disk answers slowly and scribbles over every buffer it gets back, as a disk reusing it would.
    const released: Buffer[] = [];
    class RecyclingDisk extends BufferDisk {
      override async read(offset: number, length: number): Promise<Buffer> {
        await new Promise((r) => setTimeout(r, 2));
        return super.read(offset, length);
      }
      release(buffer: Buffer): void {
        released.push(buffer);
        buffer.fill(0xee);
      }
    }
    const cached = new ReadCacheDisk(new RecyclingDisk(data), { blockSize: 1024, capacityBytes: 2048, maxCachedRead: 512 });
    // Waves of small reads in flight over 9 blocks with room for 2: blocks are evicted while reads still wait for
    // them and after their reads are done; then one read at a time.
    const probes = Array.from({ length: 200 }, (_, i) => [(i * 397) % 9_900, 1 + ((i * 31) % 100)] as const);
    for (const wave of [probes.slice(0, 100), probes.slice(100, 103), probes.slice(103, 106), ...probes.slice(106).map((p) => [p])]) {
      const results = await Promise.all(wave.map(([offset, length]) => cached.read(offset, length)));
      wave.forEach(([offset, length], i) => expect(results[i].equals(data.subarray(offset, offset + length))).toBe(true));
    }
    expect(released.length).toBeGreaterThan(10);
  });

  it('gives each caller its own copy and closes the disk', async () => {
    const a = await disk.read(0, 16);
    a.fill(0);
    expect((await disk.read(0, 16)).equals(data.subarray(0, 16))).toBe(true);
    await disk.close();
    expect(inner.closed).toBe(true);
  });
});
