/** A disk of a restore point, read through its fixed index: a Disk like any other source. */
import { Disk, Extent, checkRange } from '@vmkeep/disk';
import { CorruptChunkError, MissingChunkError } from './errors';
import { FixedIndex } from './fixed-index';

/** Loads a chunk's verified plaintext by id. */
export type ChunkLoader = (id: Buffer) => Promise<Buffer>;

/** Chunks kept decoded in memory per open disk (sequential and slightly unaligned reads hit them). */
const DEFAULT_CACHE_CHUNKS = 8;

export class PointDisk implements Disk {
  private readonly cache = new Map<number, Promise<Buffer>>();
  private readonly source: string;

  constructor(
    private readonly index: FixedIndex,
    private readonly load: ChunkLoader,
    readonly pointId: string,
    readonly diskKey: string,
    private readonly cacheChunks = DEFAULT_CACHE_CHUNKS,
  ) {
    this.source = `point ${pointId} disk ${diskKey}`;
  }

  get size(): number {
    return this.index.diskSize;
  }

  get chunkSize(): number {
    return this.index.chunkSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source, offset, length);
    const out = Buffer.allocUnsafe(length);
    const end = offset + length;
    const parts: Promise<void>[] = [];
    for (let pos = offset; pos < end; ) {
      const i = Math.floor(pos / this.index.chunkSize);
      const inChunk = pos - i * this.index.chunkSize;
      const n = Math.min(this.index.lengthOf(i) - inChunk, end - pos);
      const at = pos - offset;
      if (this.index.isZero(i)) {
        out.fill(0, at, at + n);
      } else {
        parts.push(this.chunk(i).then((data) => void data.copy(out, at, inChunk, inChunk + n)));
      }
      pos += n;
    }
    await Promise.all(parts);
    return out;
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
  }

  private chunk(i: number): Promise<Buffer> {
    const hit = this.cache.get(i);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(i);
      this.cache.set(i, hit);
      return hit;
    }
    const promise = this.loadChunk(i);
    this.cache.set(i, promise);
    promise.catch(() => this.cache.get(i) === promise && this.cache.delete(i));
    while (this.cache.size > this.cacheChunks) this.cache.delete(this.cache.keys().next().value as number);
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
