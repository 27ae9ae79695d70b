/**
 * A read cache for the metadata of a file system on a slow, chunked Disk (a restore point in the repository).
 * Inode tables, folders and the MFT are read in small pieces in an order the repository cannot predict (an htree
 * folder lists names by hash, so their inodes are visited at random): with a few cached chunks every inode can
 * cost a whole chunk load. This keeps the aligned blocks that small reads touch (least recently used first out);
 * large reads (file contents) pass straight through. An evicted block no read is copying from goes back to the
 * inner disk (`Disk.release`), which may decode the next chunk into it.
 */
import { checkRange, type Disk, type Extent } from '@vmkeep/disk';

export interface ReadCacheOptions {
  /** Size of a cached block (aligned); best the repository's chunk size. Default 1 MiB. */
  blockSize?: number;
  /** Bytes of blocks kept. Default 32 MiB. */
  capacityBytes?: number;
  /** Reads longer than this are not cached. Default 64 KiB. */
  maxCachedRead?: number;
}

export class ReadCacheDisk implements Disk {
  private readonly blocks = new Map<number, Promise<Buffer>>();
  /** Reads copying out of a block right now, by block: such a block is never given back to the inner disk. */
  private readonly pins = new Map<number, number>();
  private readonly blockSize: number;
  private readonly capacity: number;
  private readonly maxCachedRead: number;

  constructor(
    private readonly inner: Disk,
    opts: ReadCacheOptions = {},
  ) {
    this.blockSize = opts.blockSize ?? 1024 * 1024;
    this.capacity = Math.max(1, Math.floor((opts.capacityBytes ?? 32 * 1024 * 1024) / this.blockSize));
    this.maxCachedRead = Math.min(opts.maxCachedRead ?? 64 * 1024, this.blockSize);
  }

  get size(): number {
    return this.inner.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'read cache', offset, length);
    if (length > this.maxCachedRead || length === 0) return this.inner.read(offset, length);
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((offset + length - 1) / this.blockSize);
    const out = Buffer.allocUnsafe(length); // a copy: readers may change what they get (NTFS fix-ups)
    for (let b = first; b <= last; b++) {
      const start = Math.max(offset, b * this.blockSize);
      const end = Math.min(offset + length, (b + 1) * this.blockSize);
      this.pins.set(b, (this.pins.get(b) ?? 0) + 1);
      try {
        const block = await this.block(b);
        block.copy(out, start - offset, start - b * this.blockSize, end - b * this.blockSize);
      } finally {
        const left = (this.pins.get(b) ?? 1) - 1;
        if (left) this.pins.set(b, left);
        else this.pins.delete(b);
      }
    }
    return out;
  }

  private block(n: number): Promise<Buffer> {
    const hit = this.blocks.get(n);
    if (hit) {
      this.blocks.delete(n);
      this.blocks.set(n, hit);
      return hit;
    }
    const start = n * this.blockSize;
    const loading = this.inner.read(start, Math.min(this.blockSize, this.size - start));
    this.blocks.set(n, loading);
    loading.catch(() => this.blocks.get(n) === loading && this.blocks.delete(n));
    while (this.blocks.size > this.capacity) {
      const [old, evicted] = this.blocks.entries().next().value as [number, Promise<Buffer>];
      this.blocks.delete(old);
      // No read is copying out of it (reads pin their block from asking for it until the copy): the inner disk
      // may reuse its memory (a repository disk decodes the next chunk into it instead of allocating).
      if (!this.pins.has(old) && this.inner.release) evicted.then((buffer) => this.inner.release?.(buffer), () => undefined);
    }
    return loading;
  }

  extents(): Promise<Extent[]> {
    return this.inner.extents();
  }

  async close(): Promise<void> {
    this.blocks.clear();
    await this.inner.close();
  }
}
