import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BufferDisk, OverlayDisk, type Disk, type Extent } from '@vmkeep/disk';
import { BlockCache } from './block-cache';
import { openExportCache, ScratchCache, ScratchSpaceError } from './scratch-cache';

const KiB = 1024;

/** A disk over `data` with data only in `extents`, counting reads; `fail` makes reads of that offset throw. */
function source(data: Buffer, extents: Extent[] = [{ offset: 0, length: data.length }], chunkSize = 4 * KiB) {
  const inner = new BufferDisk(data);
  const disk = {
    reads: [] as Array<[number, number]>,
    released: 0,
    fail: new Set<number>(),
    chunkSize,
    size: inner.size,
    extents: async () => extents,
    close: () => inner.close(),
    release: () => void disk.released++,
    read: async (offset: number, length: number) => {
      disk.reads.push([offset, length]);
      await new Promise((r) => setImmediate(r));
      if (disk.fail.has(offset)) throw new Error(`chunk at ${offset} failed verification`);
      return inner.read(offset, length);
    },
  };
  return disk;
}

describe('ScratchCache', () => {
  const data = Buffer.alloc(40 * KiB + 100);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
  let dir: string;
  const open: Disk[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-scratch-spec-'));
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((d) => d.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const make = async (disk: Disk, opts = {}) => {
    const cache = await ScratchCache.open(disk, dir, { readAheadBlocks: 0, ...opts });
    open.push(cache);
    return cache;
  };

  it('reads each block from the source once; later reads come from the file, byte for byte', async () => {
    const disk = source(data);
    const cache = await make(disk, { memoryBytes: 0 });
    const ranges: Array<[number, number]> = [[0, 10], [4090, 20], [1000, 20 * KiB], [data.length - 150, 150], [8 * KiB, 4 * KiB]];
    for (const [o, l] of ranges) expect((await cache.read(o, l)).equals(data.subarray(o, o + l))).toBe(true);
    const { decodedBlocks: decoded, fileReads } = cache.stats();
    const reads = disk.reads.length;
    for (const [o, l] of ranges) expect((await cache.read(o, l)).equals(data.subarray(o, o + l))).toBe(true);
    expect(disk.reads.length).toBe(reads);
    expect(cache.stats()).toMatchObject({ decodedBlocks: decoded, fileReads: fileReads + ranges.length, blocks: 11, dataBlocks: 11 });
    expect(disk.reads.every(([o, l]) => o % (4 * KiB) === 0 && (l === 4 * KiB || o + l === data.length))).toBe(true);
  });

  it('shares one load between concurrent readers and serves recent blocks from memory', async () => {
    const disk = source(data);
    const cache = await make(disk, { memoryBytes: 8 * KiB });
    const offsets = [0, 100, 2000, 4000];
    const got = await Promise.all(offsets.map((o) => cache.read(o, 50)));
    got.forEach((b, i) => expect(b.equals(data.subarray(offsets[i], offsets[i] + 50))).toBe(true));
    expect(disk.reads).toEqual([[0, 4 * KiB]]);
    await new Promise((r) => setTimeout(r, 20));
    expect((await cache.read(10, 20)).equals(data.subarray(10, 30))).toBe(true);
    expect(cache.stats()).toMatchObject({ decodedBlocks: 1, memoryReads: 1, fileReads: 0, cachedBlocks: 1 });
    // Buffers readers saw as views are never handed back to the source.
    expect(disk.released).toBe(0);
  });

  it('hands the buffers hydration loaded back to the source once written', async () => {
    const disk = source(data);
    const cache = await make(disk);
    await cache.hydrate();
    expect(disk.released).toBe(11); // every chunk, the short last one too
  });

  it('never reads holes from the source and serves them as zeros', async () => {
    const sparse = Buffer.from(data);
    sparse.fill(0, 8 * KiB, 24 * KiB);
    const disk = source(sparse, [{ offset: 0, length: 8 * KiB }, { offset: 24 * KiB, length: sparse.length - 24 * KiB }]);
    const cache = await make(disk);
    expect(cache.stats()).toMatchObject({ blocks: 11, dataBlocks: 7 });
    expect((await cache.read(6 * KiB, 20 * KiB)).equals(sparse.subarray(6 * KiB, 26 * KiB))).toBe(true);
    expect(disk.reads.map(([o]) => o)).toEqual([4 * KiB, 24 * KiB]);
  });

  it('fails a read whose block fails, caches nothing of it and tries again next time', async () => {
    const disk = source(data);
    const cache = await make(disk);
    disk.fail.add(8 * KiB);
    await expect(cache.read(8 * KiB + 10, 100)).rejects.toThrow('failed verification');
    await expect(cache.read(7 * KiB, 2 * KiB)).rejects.toThrow('failed verification');
    await new Promise((r) => setTimeout(r, 20));
    expect(cache.stats().cachedBlocks).toBe(1); // block 1, read alongside
    disk.fail.clear();
    expect((await cache.read(8 * KiB + 10, 100)).equals(data.subarray(8 * KiB + 10, 8 * KiB + 110))).toBe(true);
    expect(disk.reads.filter(([o]) => o === 8 * KiB)).toHaveLength(3);
  });

  it('hydrates every data block in order, skipping failed ones, then serves everything from the file', async () => {
    const disk = source(data);
    const cache = await make(disk);
    disk.fail.add(12 * KiB);
    await cache.hydrate();
    expect(cache.stats()).toMatchObject({ hydration: 'done', cachedBlocks: 10, failedBlocks: 1, decodedBlocks: 10 });
    const before = disk.reads.length;
    expect((await cache.read(0, 12 * KiB)).equals(data.subarray(0, 12 * KiB))).toBe(true);
    expect((await cache.read(16 * KiB, data.length - 16 * KiB)).equals(data.subarray(16 * KiB))).toBe(true);
    expect(disk.reads.length).toBe(before);
    await expect(cache.read(12 * KiB, 10)).rejects.toThrow('failed verification');
  });

  it('lets a client read of a missing block go before hydration', async () => {
    const disk = source(data);
    const cache = await make(disk);
    const hydrated = cache.hydrate();
    const read = cache.read(36 * KiB, 10);
    await read;
    await hydrated;
    // Hydration had started blocks 1 and 0 (a pair, in reverse order); the client's block 9 came next, before
    // hydration's next pair.
    expect(disk.reads.slice(0, 5).map(([o]) => o / (4 * KiB))).toEqual([1, 0, 9, 3, 2]);
    expect(cache.stats()).toMatchObject({ hydration: 'done', cachedBlocks: 11, decodedBlocks: 11 });
  });

  it('loads ahead of a sequential reader', async () => {
    const disk = source(data);
    const cache = await make(disk, { readAheadBlocks: 2 });
    await cache.read(0, 4 * KiB);
    await cache.read(4 * KiB, 4 * KiB);
    await new Promise((r) => setTimeout(r, 20));
    // Loads ahead go out highest first (a source's own sequential read-ahead must not fire behind this cache).
    expect(disk.reads.map(([o]) => o / (4 * KiB))).toEqual([0, 1, 3, 2]);
    expect(cache.stats().cachedBlocks).toBe(4);
    // A small read inside a block (not entering it at its start) loads nothing ahead.
    await cache.read(4 * KiB + 100, 512);
    await cache.read(16 * KiB + 100, 512);
    await cache.read(20 * KiB + 100, 512);
    await new Promise((r) => setTimeout(r, 20));
    expect(disk.reads.map(([o]) => o / (4 * KiB))).toEqual([0, 1, 3, 2, 4, 5]);
  });

  it('refuses a disk whose data exceeds the limit or the free space, and openExportCache falls back to memory', async () => {
    await expect(ScratchCache.open(source(data), dir, { maxBytes: 16 * KiB })).rejects.toThrow(ScratchSpaceError);
    await expect(ScratchCache.open(source(data), dir, { reserveBytes: Number.MAX_SAFE_INTEGER })).rejects.toThrow(/free/);
    const logs: string[] = [];
    const opened = await openExportCache(source(data), { dir, maxBytes: 16 * KiB, log: (m) => logs.push(m) });
    expect(opened.disk).toBeInstanceOf(BlockCache);
    expect(opened.scratch).toBeUndefined();
    expect(opened.fallback).toMatch(/above the scratch cache limit/);
    expect(logs.join('\n')).toMatch(/in memory only/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('keeps serving through memory when the cache file cannot be written', async () => {
    const disk = source(data);
    const logs: string[] = [];
    const cache = await make(disk, { log: (m: string) => logs.push(m) });
    await cache.read(0, 10);
    // Make further writes fail: a read-only descriptor under the cache's file descriptor number.
    const writable = (cache as unknown as { fd: number }).fd;
    const readOnly = fs.openSync(cache.file, 'r');
    (cache as unknown as { fd: number }).fd = readOnly;
    try {
      expect((await cache.read(20 * KiB, 100)).equals(data.subarray(20 * KiB, 20 * KiB + 100))).toBe(true);
      await new Promise((r) => setTimeout(r, 20));
      expect(cache.stats().fallback).toMatch(/writing the scratch cache file failed/);
      expect(logs.join('\n')).toMatch(/in-memory cache only/);
      expect((await cache.read(20 * KiB, 100)).equals(data.subarray(20 * KiB, 20 * KiB + 100))).toBe(true);
      expect((await cache.read(0, 10)).equals(data.subarray(0, 10))).toBe(true);
    } finally {
      (cache as unknown as { fd: number }).fd = writable;
      fs.closeSync(readOnly);
    }
  });

  it('under an overlay, writes never reach the cache (memory or file)', async () => {
    const cache = await make(source(data));
    const overlay = await OverlayDisk.create(cache, path.join(dir, 'overlay'), { blockSize: 4096 });
    try {
      await overlay.write(8 * KiB + 100, Buffer.alloc(200, 0xee));
      await new Promise((r) => setTimeout(r, 20));
      expect((await cache.read(8 * KiB, 4 * KiB)).equals(data.subarray(8 * KiB, 12 * KiB))).toBe(true);
      expect(fs.readFileSync(cache.file).subarray(8 * KiB, 12 * KiB).equals(data.subarray(8 * KiB, 12 * KiB))).toBe(true);
      expect((await overlay.read(8 * KiB + 100, 200)).equals(Buffer.alloc(200, 0xee))).toBe(true);
    } finally {
      await overlay.close();
    }
  });

  it('deletes its file on close and refuses reads afterwards', async () => {
    const cache = await ScratchCache.open(source(data), dir, { readAheadBlocks: 0 });
    await cache.read(0, 100);
    expect(fs.existsSync(cache.file)).toBe(true);
    await cache.close();
    expect(fs.existsSync(cache.file)).toBe(false);
    await expect(cache.read(0, 100)).rejects.toThrow(/closed/);
  });
});
