/** A disk of a restore point, read through its fixed index: a Disk like any other source. */
import { Disk, Extent, checkRange } from '@vmkeep/disk';
import { CorruptChunkError, MissingChunkError } from './errors';
import { FixedIndex } from './fixed-index';

/** Loads a chunk's verified plaintext by id. */
export type ChunkLoader = (id: Buffer) => Promise<Buffer>;
/** Takes back a plaintext the disk no longer uses (see ChunkCodec.recycle). */
export type ChunkRecycler = (plain: Buffer) => void;

/** Chunks kept decoded in memory per open disk (sequential and slightly unaligned reads hit them). */
const DEFAULT_CACHE_CHUNKS = 8;
/**
 * Bytes loaded ahead of a sequential reader by default (decoded on the worker pool meanwhile), on top of the cache;
 * they count against memory like cached ones. 12 MiB keeps a decode queued for each chunk worker while the reader
 * is busy writing (12 chunks of 1 MiB), and bounds the memory of large chunks (3 of 4 MiB).
 */
const READ_AHEAD_BYTES = 12 * 1024 * 1024;
const MIN_READ_AHEAD_CHUNKS = 2;
const MAX_READ_AHEAD_CHUNKS = 12;

/** The default read-ahead in chunks for a chunk size: READ_AHEAD_BYTES worth, at least 2, at most 12 chunks. */
export function defaultReadAhead(chunkSize: number): number {
  return Math.min(MAX_READ_AHEAD_CHUNKS, Math.max(MIN_READ_AHEAD_CHUNKS, Math.ceil(READ_AHEAD_BYTES / Math.max(1, chunkSize))));
}

export class PointDisk implements Disk {
  /** Chunks a read used, in LRU order (at most cacheChunks). */
  private readonly cache = new Map<number, Promise<Buffer>>();
  /** Chunks loaded ahead of the reader and not used yet (at most readAheadChunks). */
  private readonly ahead = new Map<number, Promise<Buffer>>();
  /** Reads copying out of a chunk right now, by chunk: such a chunk is never evicted (and so never recycled). */
  private readonly pins = new Map<number, number>();
  private readonly source: string;
  /** The chunk after the last one a read asked for: where a sequential reader goes next. */
  private nextExpected = -1;
  /** Chunks loaded ahead of a sequential reader at most (defaultReadAhead of the chunk size unless given). */
  private readonly readAheadChunks: number;

  constructor(
    private readonly index: FixedIndex,
    private readonly load: ChunkLoader,
    readonly pointId: string,
    readonly diskKey: string,
    private readonly cacheChunks = DEFAULT_CACHE_CHUNKS,
    readAheadChunks?: number,
    private readonly recycle?: ChunkRecycler,
  ) {
    this.source = `point ${pointId} disk ${diskKey}`;
    this.readAheadChunks = readAheadChunks ?? defaultReadAhead(index.chunkSize);
  }

  get size(): number {
    return this.index.diskSize;
  }

  get chunkSize(): number {
    return this.index.chunkSize;
  }

  /**
   * The bytes at [offset, offset + length), in a buffer the caller owns (the disk never touches it again). A read
   * of exactly one whole chunk (chunk-aligned, the chunk's length) gets the decoded chunk itself, no copy: a chunk
   * loaded ahead, or one loaded for this read alone; only a chunk already cached for other reads is copied. An
   * all-zero chunk is a fresh zeroed buffer. Bad chunks throw (CorruptChunkError / MissingChunkError), never zeros.
   */
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source, offset, length);
    const end = offset + length;
    if (length > 0) this.readAhead(Math.floor(offset / this.index.chunkSize), Math.floor((end - 1) / this.index.chunkSize));
    const whole = this.wholeChunk(offset, length);
    if (whole >= 0) {
      if (this.index.isZero(whole)) return Buffer.alloc(length);
      if (!this.cache.has(whole)) return this.handOut(whole);
    }
    const out = Buffer.allocUnsafe(length);
    const parts: Promise<void>[] = [];
    for (let pos = offset; pos < end; ) {
      const i = Math.floor(pos / this.index.chunkSize);
      const inChunk = pos - i * this.index.chunkSize;
      const n = Math.min(this.index.lengthOf(i) - inChunk, end - pos);
      const at = pos - offset;
      if (this.index.isZero(i)) {
        out.fill(0, at, at + n);
      } else {
        parts.push(this.copyOut(i, out, at, inChunk, inChunk + n));
      }
      pos += n;
    }
    await Promise.all(parts);
    return out;
  }

  /**
   * Takes back a buffer `read` returned, which the caller (and every view of it) will never touch again: its
   * memory may be reused at once for decoding another chunk. Optional: an unreleased buffer is garbage collected.
   */
  release(buffer: Buffer): void {
    this.recycle?.(buffer);
  }

  /** Ranges of the chunks that are not all-zero, merged. */
  async extents(): Promise<Extent[]> {
    const result: Extent[] = [];
    const { chunkSize, count } = this.index;
    for (let i = 0; i < count; i++) {
      if (this.index.isZero(i)) continue;
      const offset = i * chunkSize;
      const last = result[result.length - 1];
      if (last && last.offset + last.length === offset) last.length += this.index.lengthOf(i);
      else result.push({ offset, length: this.index.lengthOf(i) });
    }
    return result;
  }

  async close(): Promise<void> {
    this.cache.clear();
    this.ahead.clear();
  }

  /**
   * A read of chunks [first, last]: when it continues where the previous read ended, starts loading the next
   * non-zero chunks so they are decoded by the time the reader gets there. Random access loads nothing extra.
   */
  private readAhead(first: number, last: number): void {
    const sequential = first === this.nextExpected || first === this.nextExpected - 1;
    this.nextExpected = last + 1;
    const limit = Math.min(this.index.count, last + 1 + this.readAheadChunks);
    // Loaded ahead for a reader that went elsewhere: dropped.
    for (const i of this.ahead.keys()) if (i < first || i >= limit) this.ahead.delete(i);
    if (!sequential) return;
    for (let i = last + 1; i < limit && this.ahead.size < this.readAheadChunks; i++) {
      if (this.index.isZero(i) || this.cache.has(i) || this.ahead.has(i)) continue;
      const promise = this.loadChunk(i);
      promise.catch(() => undefined); // surfaces when the reader gets there
      this.ahead.set(i, promise);
    }
  }

  /** The chunk [offset, offset + length) is exactly, or -1. */
  private wholeChunk(offset: number, length: number): number {
    const { chunkSize } = this.index;
    if (length === 0 || offset % chunkSize !== 0) return -1;
    const i = offset / chunkSize;
    return this.index.lengthOf(i) === length ? i : -1;
  }

  /** Chunk i for one reader alone: taken from the read-ahead or loaded, never cached (so never recycled). */
  private handOut(i: number): Promise<Buffer> {
    const promise = this.ahead.get(i) ?? this.loadChunk(i);
    this.ahead.delete(i);
    return promise;
  }

  /** Copies part of chunk i into `out`, keeping the chunk pinned meanwhile. */
  private async copyOut(i: number, out: Buffer, at: number, from: number, to: number): Promise<void> {
    this.pins.set(i, (this.pins.get(i) ?? 0) + 1);
    try {
      const data = await this.chunk(i);
      // A recycled (moved-away) buffer would read as empty: never let that become zeros in the output.
      if (data.length < to) throw new Error(`${this.source}: chunk ${i} buffer is no longer available (internal error)`);
      data.copy(out, at, from, to);
    } finally {
      const left = (this.pins.get(i) ?? 1) - 1;
      if (left) this.pins.set(i, left);
      else this.pins.delete(i);
    }
  }

  /** Drops least recently used chunks beyond the cache size; unpinned ones go back to the recycler. */
  private evict(): void {
    for (const [i, promise] of this.cache) {
      if (this.cache.size <= this.cacheChunks) return;
      if (this.pins.has(i)) continue;
      this.cache.delete(i);
      // Out of the cache and unpinned: no read can reach this buffer any more.
      if (this.recycle) promise.then(this.recycle, () => undefined);
    }
  }

  private chunk(i: number): Promise<Buffer> {
    const hit = this.cache.get(i);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(i);
      this.cache.set(i, hit);
      return hit;
    }
    const promise = this.ahead.get(i) ?? this.loadChunk(i);
    this.ahead.delete(i);
    this.cache.set(i, promise);
    promise.catch(() => this.cache.get(i) === promise && this.cache.delete(i));
    this.evict();
    return promise;
  }

  private async loadChunk(i: number): Promise<Buffer> {
    const id = this.index.idAt(i);
    const context = { pointId: this.pointId, diskKey: this.diskKey, offset: i * this.index.chunkSize };
    let data: Buffer;
    try {
      data = await this.load(id);
    } catch (err) {
      if (err instanceof CorruptChunkError || err instanceof MissingChunkError) throw err.withContext(context);
      throw err;
    }
    const expected = this.index.lengthOf(i);
    if (data.length !== expected) {
      throw new CorruptChunkError(id.toString('hex'), `holds ${data.length} bytes, the index expects ${expected}`, context);
    }
    return data;
  }
}
