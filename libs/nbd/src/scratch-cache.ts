/**
 * A decoded-block cache on local scratch storage in front of an exported Disk (a restore point), shared by every
 * connection of the export. Each block (default: the source's chunk) is read from the source at most once per
 * cache: the decoded bytes go into a sparse file sized like the disk, a bitmap in memory records which blocks are
 * in it, and later reads of those blocks are positioned reads of that file (served from the page cache). Optional
 * background hydration reads the whole source into the file at low priority (client reads of missing blocks go
 * first). Memory holds the blocks being loaded or written and a few recently loaded ones, from which reads inside
 * one block are served as views (a sequential reader's requests of one chunk cost no copy).
 *
 * The cache is disposable: close() deletes its file. A block the source fails to read is an error for that read
 * and is never cached. When the scratch file cannot be written (no space left), the cache stops growing, logs why
 * and serves missing blocks through an in-memory BlockCache as before; blocks already in the file stay served.
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { checkRange, DiskError, type Disk, type Extent } from '@vmkeep/disk';
import { BlockCache } from './block-cache';

export interface ScratchCacheOptions {
  /** Bytes per block; default the source's `chunkSize` when it has one, else 1 MiB. */
  blockSize?: number;
  /** Blocks loaded ahead of a sequential reader. Default 4. */
  readAheadBlocks?: number;
  /** Memory for recently loaded blocks (besides those loading). Default 16 MiB. */
  memoryBytes?: number;
  /** Largest amount of data the cache file may hold; a disk with more data gets no scratch cache. Default: no limit. */
  maxBytes?: number;
  /** Free space left in the scratch folder's file system after the cache is full. Default 256 MiB. */
  reserveBytes?: number;
  /** Memory of the BlockCache used for missing blocks once the file cannot grow. Default 64 MiB. */
  fallbackMemoryBytes?: number;
  /** One line per noteworthy event (fallback, hydration). */
  log?: (message: string) => void;
}

/** The scratch folder cannot hold the cache (too little free space, or above `maxBytes`). */
export class ScratchSpaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScratchSpaceError';
  }
}

export type HydrationState = 'off' | 'running' | 'done' | 'stopped';

export interface ScratchCacheStats {
  blockSize: number;
  /** Blocks of the disk. */
  blocks: number;
  /** Blocks holding data (the rest are holes and are never read from the source). */
  dataBlocks: number;
  /** Data blocks in the cache file. */
  cachedBlocks: number;
  /** Blocks read (decoded) from the source, by clients, read-ahead and hydration. */
  decodedBlocks: number;
  /** Reads answered from the cache file alone. */
  fileReads: number;
  /** Reads answered from recently loaded blocks in memory alone. */
  memoryReads: number;
  hydration: HydrationState;
  /** Blocks hydration could not read (each stays missing; a client read of it gets the error). */
  failedBlocks: number;
  /** Why the cache file stopped growing, if it did. */
  fallback?: string;
}

export const DEFAULT_SCRATCH_RESERVE_BYTES = 256 * 1024 * 1024;
const DEFAULT_MEMORY_BYTES = 16 * 1024 * 1024;
const DEFAULT_BLOCK = 1024 * 1024;
const CACHE_FILE = 'cache.data';
const SOURCE = 'scratch cache';
/**
 * Reads of cached blocks up to this size are done synchronously: the file was just written, so they are page-cache
 * copies of a few microseconds, far below what a trip through the libuv thread pool costs per request (measured:
 * ≈ 3 µs vs ≈ 8–20 µs of main-thread CPU for 4 KiB). Larger reads go through the thread pool.
 */
const SYNC_READ_BYTES = 64 * 1024;

/** Block states. */
const MISSING = 0;
const CACHED = 1;
const HOLE = 2;

/** A block read from the source: loading, being written to the file, or kept in memory as a recent block. */
interface Loaded {
  block: number;
  data: Promise<Buffer>;
  /** Settles once the block is in the file (or failed). */
  settled: Promise<void>;
  /** Loaded for a client or its read-ahead (kept as a recent block), not by hydration. */
  wanted: boolean;
  /** Readers copying out of `data` right now. */
  users: number;
  /** A view of the buffer went to a reader: it is never handed back to the source. */
  viewed: boolean;
  written: boolean;
  buffer?: Buffer;
}

export class ScratchCache implements Disk {
  private readonly loading = new Map<number, Loaded>();
  /** Recently loaded blocks, least recently used first. */
  private readonly recent = new Map<number, Loaded>();
  private readonly maxRecent: number;
  private readonly blockSize: number;
  private readonly readAheadBlocks: number;
  private readonly count: number;
  private readonly dataBlocks: number;
  private cachedBlocks = 0;
  private decodedBlocks = 0;
  private fileReads = 0;
  private memoryReads = 0;
  private failedBlocks = 0;
  /** Loads started by client reads (not read-ahead or hydration) that are not decoded yet. */
  private clientLoads = 0;
  private idleWaiters: Array<() => void> = [];
  private hydration?: Promise<void>;
  private hydrationState: HydrationState = 'off';
  private fallback?: { reason: string; cache: BlockCache };
  private closed = false;
  private extentsCache?: Promise<Extent[]>;
  private readonly fd: number;
  /** The chunk size when blocks are whole chunks: only such buffers are handed back to the source for reuse. */
  private readonly releasable: boolean;

  private constructor(
    private readonly source: Disk,
    private readonly handle: fsp.FileHandle,
    /** The sparse cache file. */
    readonly file: string,
    private readonly state: Uint8Array,
    blockSize: number,
    private readonly options: ScratchCacheOptions,
  ) {
    this.fd = handle.fd;
    this.blockSize = blockSize;
    this.readAheadBlocks = options.readAheadBlocks ?? 4;
    this.maxRecent = Math.floor((options.memoryBytes ?? DEFAULT_MEMORY_BYTES) / blockSize);
    this.count = state.length;
    let data = 0;
    for (let b = 0; b < state.length; b++) if (state[b] === MISSING) data++;
    this.dataBlocks = data;
    const chunkSize = (source as Partial<{ chunkSize: number }>).chunkSize;
    this.releasable = chunkSize === blockSize && typeof (source as Partial<Releasing>).release === 'function';
  }

  /**
   * Creates the cache file in `dir` (created if missing; the file must not exist yet). Throws ScratchSpaceError when
   * the disk's data (its extents) would not fit: above `maxBytes`, or leaving less than `reserveBytes` free.
   */
  static async open(source: Disk, dir: string, options: ScratchCacheOptions = {}): Promise<ScratchCache> {
    const chunkSize = (source as Partial<{ chunkSize: number }>).chunkSize;
    const blockSize = options.blockSize ?? (Number.isInteger(chunkSize) && chunkSize! > 0 ? chunkSize! : DEFAULT_BLOCK);
    if (!Number.isInteger(blockSize) || blockSize < 512) throw new RangeError(`block size ${blockSize} must be an integer of at least 512`);
    const state = new Uint8Array(Math.ceil(source.size / blockSize)).fill(HOLE);
    let dataBytes = 0;
    for (const e of await source.extents()) {
      if (e.length <= 0) continue;
      for (let b = Math.floor(e.offset / blockSize); b <= Math.floor((e.offset + e.length - 1) / blockSize); b++) {
        if (state[b] === MISSING) continue;
        state[b] = MISSING;
        dataBytes += Math.min(blockSize, source.size - b * blockSize);
      }
    }
    if (options.maxBytes !== undefined && dataBytes > options.maxBytes) {
      throw new ScratchSpaceError(`the disk holds ${mib(dataBytes)} of data, above the scratch cache limit of ${mib(options.maxBytes)}`);
    }
    await fsp.mkdir(dir, { recursive: true });
    const fsStats = await fsp.statfs(dir);
    const free = fsStats.bavail * fsStats.bsize;
    const reserve = options.reserveBytes ?? DEFAULT_SCRATCH_RESERVE_BYTES;
    if (free - dataBytes < reserve) {
      throw new ScratchSpaceError(`the scratch folder has ${mib(free)} free; caching ${mib(dataBytes)} of data would leave less than ${mib(reserve)}`);
    }
    const file = path.join(dir, CACHE_FILE);
    const handle = await fsp.open(file, 'wx+', 0o600);
    try {
      await handle.truncate(source.size); // sparse: takes no space until written
    } catch (err) {
      await handle.close();
      await fsp.rm(file, { force: true });
      throw err;
    }
    return new ScratchCache(source, handle, file, state, blockSize, options);
  }

  get size(): number {
    return this.source.size;
  }

  extents(): Promise<Extent[]> {
    if (!this.extentsCache) {
      this.extentsCache = this.source.extents();
      this.extentsCache.catch(() => (this.extentsCache = undefined));
    }
    return this.extentsCache;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, SOURCE, offset, length);
    if (this.closed) throw new DiskError('the cache is closed', SOURCE);
    if (length === 0) return Buffer.alloc(0);
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    if (first === last) return this.readInBlock(first, offset - first * bs, length);
    if (this.fallback) {
      for (let b = first; b <= last; b++) {
        if (this.state[b] === MISSING && !this.recent.has(b)) return this.fallback.cache.read(offset, length);
      }
    }
    const out = Buffer.allocUnsafe(length);
    const parts: Promise<void>[] = [];
    let decoded = false;
    for (let b = first; b <= last; b++) {
      const start = Math.max(offset, b * bs);
      const end = Math.min(offset + length, (b + 1) * bs);
      const recent = this.touch(b);
      if (recent?.buffer) recent.buffer.copy(out, start - offset, start - b * bs, end - b * bs);
      else if (this.state[b] !== MISSING) parts.push(this.readFile(out, start - offset, start, end - start));
      else {
        decoded = true;
        parts.push(this.copyOut(b, out, start - offset, start - b * bs, end - b * bs));
      }
    }
    this.readAhead(first, last, true);
    await Promise.all(parts);
    if (!decoded) this.fileReads++;
    return out;
  }

  /** A read inside block b: a view of the block when it is in memory (recent or loading), else from the file. */
  private async readInBlock(b: number, at: number, length: number): Promise<Buffer> {
    const recent = this.touch(b);
    if (recent?.buffer) {
      recent.viewed = true;
      this.memoryReads++;
      this.readAhead(b, b, at === 0);
      return recent.buffer.subarray(at, at + length);
    }
    if (this.state[b] !== MISSING) {
      this.readAhead(b, b, at === 0);
      this.fileReads++;
      const out = Buffer.allocUnsafe(length);
      if (length <= SYNC_READ_BYTES) this.readFileNow(out, b * this.blockSize + at);
      else await this.readFile(out, 0, b * this.blockSize + at, length);
      return out;
    }
    if (this.fallback) return this.fallback.cache.read(b * this.blockSize + at, length);
    const entry = this.loading.get(b) ?? this.load(b, 'client');
    entry.viewed = true;
    this.readAhead(b, b, at === 0);
    return (await entry.data).subarray(at, at + length);
  }

  /**
   * Starts (once) reading every missing block into the file, in disk order, one at a time and only while no client
   * read waits for a block. Resolves when done or stopped (close, fallback); failed blocks are counted and skipped.
   */
  hydrate(): Promise<void> {
    this.hydration ??= this.runHydration();
    return this.hydration;
  }

  stats(): ScratchCacheStats {
    return {
      blockSize: this.blockSize,
      blocks: this.count,
      dataBlocks: this.dataBlocks,
      cachedBlocks: this.cachedBlocks,
      decodedBlocks: this.decodedBlocks,
      fileReads: this.fileReads,
      memoryReads: this.memoryReads,
      hydration: this.hydrationState,
      failedBlocks: this.failedBlocks,
      ...(this.fallback ? { fallback: this.fallback.reason } : {}),
    };
  }

  /** Stops hydration, waits for blocks being written, deletes the cache file. The source stays open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wakeIdle();
    await this.hydration;
    await Promise.all([...this.loading.values()].map((l) => l.settled));
    this.recent.clear();
    await this.fallback?.cache.close();
    await this.handle.close();
    await fsp.rm(this.file, { force: true });
  }

  private async runHydration(): Promise<void> {
    this.hydrationState = 'running';
    const started = Date.now();
    // Two blocks at a time (one per decode worker of a restore point), each pair in reverse order: a source with
    // its own sequential read-ahead (PointDisk) then never queues more loads in front of the clients' reads.
    for (let b = 0; b < this.count; b += 2) {
      while (this.clientLoads > 0 && !this.closed) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      if (this.closed || this.fallback) break;
      const pair = [b + 1, b].filter((x) => x < this.count && this.state[x] === MISSING);
      const entries = pair.map((x) => this.loading.get(x) ?? this.load(x, 'hydrate'));
      await Promise.all(entries.map((e) => e.settled));
      for (const entry of entries) {
        if (this.state[entry.block] !== MISSING || this.closed || this.fallback) continue;
        this.failedBlocks++;
        // The reason reaches whoever reads the block; here it is only counted.
        await entry.data.catch((err: Error) => {
          if (this.failedBlocks <= 3) this.options.log?.(`scratch cache: hydration skipped block ${entry.block}: ${err.message}`);
        });
      }
    }
    this.hydrationState = this.closed || this.fallback ? 'stopped' : 'done';
    this.options.log?.(
      `scratch cache: hydration ${this.hydrationState} after ${((Date.now() - started) / 1000).toFixed(1)} s ` +
        `(${this.cachedBlocks}/${this.dataBlocks} data blocks cached, ${this.failedBlocks} failed)`,
    );
  }

  /**
   * A read that enters blocks [first, last] across a block boundary (`entering`: it starts at the start of `first`
   * or spans blocks) right after the previous block keeps the next `readAheadBlocks` loaded or loading (a window
   * that slides with each sequential stream, however many interleave). Random small reads seldom start at a block
   * boundary, so they do not trigger loads they would not use. New loads go out at least two at a time, highest
   * block first (unless the very next block is missing): a source with its own read-ahead for one sequential
   * reader (PointDisk) then never sees a sequential reader here, whose guesses would be wasted behind this cache
   * (measured: 2916 chunk decodes for a 1024-chunk disk read by nbdcopy's four interleaved streams).
   */
  private readAhead(first: number, last: number, entering: boolean): void {
    if (!entering || this.fallback || this.readAheadBlocks === 0 || first === 0) return;
    if (this.state[first - 1] === MISSING && !this.loading.has(first - 1)) return;
    const missing: number[] = [];
    for (let b = last + 1; b < Math.min(this.count, last + 1 + this.readAheadBlocks); b++) {
      if (this.state[b] === MISSING && !this.loading.has(b)) missing.push(b);
    }
    if (missing.length === 0 || (missing.length === 1 && missing[0] !== last + 1)) return;
    for (let i = missing.length - 1; i >= 0; i--) this.load(missing[i], 'ahead');
  }

  /** Copies [from, to) of block b into out at `at`, loading the block unless it is loading already. */
  private async copyOut(b: number, out: Buffer, at: number, from: number, to: number): Promise<void> {
    const entry = this.loading.get(b) ?? this.load(b, 'client');
    entry.users++;
    try {
      (await entry.data).copy(out, at, from, to);
    } finally {
      entry.users--;
      this.releaseIfUnused(entry);
    }
  }

  private load(b: number, why: 'client' | 'ahead' | 'hydrate'): Loaded {
    const start = b * this.blockSize;
    const length = Math.min(this.blockSize, this.size - start);
    const data = this.source.read(start, length);
    const client = why === 'client';
    if (client) this.clientLoads++;
    const entry: Loaded = { block: b, data, settled: Promise.resolve(), wanted: why !== 'hydrate', users: 0, viewed: false, written: false };
    entry.settled = data.then(
      async (buffer) => {
        this.decodedBlocks++;
        entry.buffer = buffer;
        if (client) this.clientLoaded();
        try {
          if (this.fallback || this.closed) return;
          await this.writeFile(buffer, start);
          this.state[b] = CACHED;
          this.cachedBlocks++;
        } catch (err) {
          this.fallBack(`writing the scratch cache file failed: ${(err as Error).message}`);
        } finally {
          entry.written = true;
          this.loading.delete(b);
          if ((entry.wanted || entry.viewed) && !this.closed) this.remember(entry);
          else this.releaseIfUnused(entry);
        }
      },
      () => {
        // Not cached: the next read of the block tries the source again (and gets its error itself).
        if (client) this.clientLoaded();
        this.loading.delete(b);
      },
    );
    this.loading.set(b, entry);
    return entry;
  }

  /** The recent block b, refreshed in the LRU order, if it is in memory. */
  private touch(b: number): Loaded | undefined {
    const hit = this.recent.get(b);
    if (hit) {
      this.recent.delete(b);
      this.recent.set(b, hit);
    }
    return hit;
  }

  /** Keeps a loaded block in memory, dropping the least recently used ones above the limit. */
  private remember(entry: Loaded): void {
    this.recent.set(entry.block, entry);
    for (const old of this.recent.values()) {
      if (this.recent.size <= this.maxRecent) break;
      this.recent.delete(old.block);
      this.releaseIfUnused(old);
    }
  }

  /** Hands a whole-chunk buffer back to the source once no reader can reach it (written, not viewed, not in use). */
  private releaseIfUnused(entry: Loaded): void {
    if (!entry.written || entry.viewed || entry.users > 0 || !entry.buffer || this.recent.get(entry.block) === entry) return;
    const buffer = entry.buffer;
    entry.buffer = undefined;
    if (this.releasable) (this.source as unknown as Releasing).release(buffer);
  }

  private clientLoaded(): void {
    this.clientLoads--;
    if (this.clientLoads === 0) this.wakeIdle();
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private fallBack(reason: string): void {
    if (this.fallback) return;
    this.fallback = { reason, cache: new BlockCache(this.source, { blockSize: this.blockSize, maxBytes: this.options.fallbackMemoryBytes }) };
    this.options.log?.(`scratch cache: ${reason}; missing blocks are now read through an in-memory cache only`);
  }

  private writeFile(data: Buffer, position: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        if (done === data.length) return resolve();
        fs.write(this.fd, data, done, data.length - done, position + done, (err, n) => (err ? reject(err) : step(done + n)));
      };
      step(0);
    });
  }

  private readFileNow(out: Buffer, position: number): void {
    for (let done = 0; done < out.length; ) {
      const n = fs.readSync(this.fd, out, done, out.length - done, position + done);
      if (n === 0) throw new DiskError('the cache file is shorter than the disk', SOURCE, position + done);
      done += n;
    }
  }

  private readFile(out: Buffer, at: number, position: number, length: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        if (done === length) return resolve();
        fs.read(this.fd, out, at + done, length - done, position + done, (err, n) => {
          if (err) return reject(err);
          if (n === 0) return reject(new DiskError('the cache file is shorter than the disk', SOURCE, position + done));
          step(done + n);
        });
      };
      step(0);
    });
  }
}

export interface ExportCacheOptions extends ScratchCacheOptions {
  /** Folder of the cache file; omitted = memory only (BlockCache). */
  dir?: string;
  /** Start background hydration. */
  hydrate?: boolean;
}

/**
 * The cache an export reads a restore point through: a ScratchCache in `options.dir` (hydrating if asked), or,
 * when there is no folder or the cache cannot be made there (too little space, file errors), the in-memory
 * BlockCache as before, with the reason logged. Closing the returned disk never closes `source`.
 */
export async function openExportCache(
  source: Disk,
  options: ExportCacheOptions = {},
): Promise<{ disk: Disk; scratch?: ScratchCache; fallback?: string }> {
  const memory = (): Disk => new BlockCache(source, { maxBytes: options.fallbackMemoryBytes });
  if (options.dir === undefined) return { disk: memory() };
  let scratch: ScratchCache;
  try {
    scratch = await ScratchCache.open(source, options.dir, options);
  } catch (err) {
    const fallback = `no scratch cache: ${(err as Error).message}`;
    options.log?.(`${fallback}; decoded blocks are kept in memory only`);
    return { disk: memory(), fallback };
  }
  if (options.hydrate) void scratch.hydrate();
  return { disk: scratch, scratch };
}

interface Releasing {
  release(buffer: Buffer): void;
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(0)} MiB`;
}
