/** The chunk store: content-addressed blobs, written once, read many times. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fsyncPath, tempPathFor } from './atomic';
import { CHUNK_FANOUT_CHARS, CHUNK_ID_BYTES, GC_TRASH_MARKER } from './constants';
import { MissingChunkError, RepositoryError } from './errors';

export interface ChunkStore {
  has(id: Buffer): Promise<boolean>;
  /** The stored blob; MissingChunkError when absent. */
  get(id: Buffer): Promise<Buffer>;
  /**
   * Stores the blob unless a chunk with this id exists; `existed` tells which happened. `overwrite` replaces an
   * existing blob (a chunk verify found bad). The blob may come in consecutive parts (ChunkCodec.encodeParts).
   */
  insert(id: Buffer, blob: BlobData, opts?: { overwrite?: boolean }): Promise<{ existed: boolean }>;
  /**
   * Whether the chunk exists, marking it as used now when it does: a writer that deduplicates against a chunk
   * calls this so a concurrent garbage collection keeps the chunk (FORMAT.md, garbage collection).
   */
  refresh(id: Buffer): Promise<boolean>;
  /**
   * Makes every chunk inserted so far durable (a crash or power loss keeps it); a point's manifest is written
   * only after this. Throws when storing a chunk failed since `since` (a syncMark()), or, without it, when a
   * chunk still pending at this call could not be made durable.
   */
  flush(since?: number): Promise<void>;
  /** A mark for flush(since): inserts and dedups after it are covered by that flush's error check. */
  syncMark(): number;
}

/** A blob to store: one buffer, or its consecutive parts. */
export type BlobData = Buffer | readonly Buffer[];

/** The blob as one buffer (parts are joined: for stores that need it whole). */
export const wholeBlob = (blob: BlobData): Buffer => (Buffer.isBuffer(blob) ? blob : blob.length === 1 ? blob[0] : Buffer.concat(blob));

/** A chunk written (and closed) under its temp name, not yet fsynced and renamed to its name. */
interface PendingChunk {
  temp: string;
  file: string;
}

/** Chunks made durable together (fsync each, rename, fsync their folders): at most this many wait. */
export const SYNC_BATCH_CHUNKS = 32;
/** fsync/rename calls in flight at once: the rest of libuv's thread pool keeps serving the backup's reads. */
const SYNC_PARALLEL = 2;

/** Runs `fn` over `items` with at most `parallel` calls at once; every call runs, the first error is thrown. */
async function forEachLimited<T>(items: readonly T[], parallel: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, lane));
  if (failure) throw failure.err;
}

const isErrno = (err: unknown, code: string) => (err as NodeJS.ErrnoException | undefined)?.code === code;

function checkId(id: Buffer): string {
  if (id.length !== CHUNK_ID_BYTES) {
    throw new RepositoryError(`chunk id must be ${CHUNK_ID_BYTES} bytes, got ${id.length}`, 'INVALID_CHUNK_ID');
  }
  return id.toString('hex');
}

/**
 * Chunk store in a local folder: `<dir>/<first 4 hex chars>/<64 hex chars>`. A chunk is written to a temp file
 * in its folder and, in batches off the writer's path, fsynced, renamed to its name and its folder fsynced: a
 * chunk file under its name is always complete and durable, and flush() (before a manifest) waits for the rest.
 * Until then this store answers has/get/refresh for its pending chunks itself.
 */
export class FsChunkStore implements ChunkStore {
  private readonly knownDirs = new Set<string>();
  /** Chunks written but not yet under their name, by hex id. */
  private readonly pending = new Map<string, PendingChunk>();
  /** Pending chunks no batch has taken yet. */
  private unsynced: PendingChunk[] = [];
  /** Folders whose new entries are not yet durable (a new fan-out folder makes `dir` one). */
  private dirtyDirs = new Set<string>();
  /** Batches running (each settles; failures are counted, see flush). */
  private readonly batches = new Set<Promise<void>>();
  private failures = 0;
  private lastFailure: unknown;

  constructor(readonly dir: string) {}

  /** Path of a chunk's blob file. */
  pathOf(id: Buffer): string {
    const hex = checkId(id);
    return path.join(this.dir, hex.slice(0, CHUNK_FANOUT_CHARS), hex);
  }

  async has(id: Buffer): Promise<boolean> {
    if (this.pending.has(checkId(id))) return true;
    try {
      await fs.access(this.pathOf(id));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * The file holding a stored chunk, for a reader that opens it itself (a chunk worker); undefined while the
   * chunk is still pending (use get()).
   */
  fileOf(id: Buffer): string | undefined {
    return this.pending.has(checkId(id)) ? undefined : this.pathOf(id);
  }

  async get(id: Buffer): Promise<Buffer> {
    const pending = this.pending.get(checkId(id));
    if (pending) {
      try {
        return await readWhole(pending.temp);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err; // renamed meanwhile: read it under its name
      }
    }
    try {
      return await readWhole(this.pathOf(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingChunkError(id.toString('hex'));
      throw err;
    }
  }

  async refresh(id: Buffer): Promise<boolean> {
    if (this.pending.has(checkId(id))) return true; // written just now, renamed with a fresh time
    const now = new Date();
    try {
      await fs.utimes(this.pathOf(id), now, now);
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async insert(id: Buffer, blob: BlobData, opts: { overwrite?: boolean } = {}): Promise<{ existed: boolean }> {
    const hex = checkId(id);
    if (!opts.overwrite && (await this.has(id))) return { existed: true };
    const file = this.pathOf(id);
    const dir = path.dirname(file);
    if (!this.knownDirs.has(dir)) {
      // A newly created fan-out folder must itself survive a crash before chunks in it count as stored: the
      // batch fsyncs `dir` too.
      if (await fs.mkdir(dir, { recursive: true })) this.dirtyDirs.add(this.dir);
      this.knownDirs.add(dir);
    }
    const temp = tempPathFor(file);
    try {
      await writeNew(temp, blob);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw err;
    }
    if (this.pending.has(hex) && !opts.overwrite) {
      // Inserted by someone else while we wrote: theirs stands.
      await fs.rm(temp, { force: true });
      return { existed: true };
    }
    // Two writers (or processes) racing on the same id rename identical content into place: harmless. A temp
    // file never renamed (the process died, or nothing flushed it) is swept by garbage collection.
    const entry = { temp, file };
    this.pending.set(hex, entry);
    this.unsynced.push(entry);
    if (this.unsynced.length >= SYNC_BATCH_CHUNKS) this.startBatch();
    return { existed: false };
  }

  syncMark(): number {
    return this.failures;
  }

  async flush(since?: number): Promise<void> {
    this.startBatch();
    let failed = false;
    for (const batch of [...this.batches]) await batch.catch(() => (failed = true));
    // Without a mark, only the batches that were pending at this call count; with one, every failure since.
    if (failed || (since !== undefined && this.failures > since)) throw this.lastFailure;
  }

  /** Hands the chunks written so far (and folders left to sync) to a new batch; no-op when there are none. */
  private startBatch(): void {
    if (!this.unsynced.length && !this.dirtyDirs.size) return;
    const chunks = this.unsynced;
    this.unsynced = [];
    const dirs = this.dirtyDirs;
    this.dirtyDirs = new Set();
    const batch = this.syncBatch(chunks, dirs);
    this.batches.add(batch);
    batch.then(
      () => this.batches.delete(batch),
      (err: unknown) => {
        this.batches.delete(batch);
        this.failures++;
        this.lastFailure = err;
      },
    );
  }

  private async syncBatch(chunks: PendingChunk[], dirs: Set<string>): Promise<void> {
    for (const c of chunks) dirs.add(path.dirname(c.file));
    try {
      await forEachLimited(chunks, SYNC_PARALLEL, async (c) => {
        await fsyncPath(c.temp);
        await fs.rename(c.temp, c.file);
      });
      await forEachLimited([...dirs], SYNC_PARALLEL, fsyncPath);
    } catch (err) {
      // Leave nothing half done behind: temp files of this batch go; a chunk already renamed stays (it is
      // complete), and its folder is synced again with the next batch.
      await Promise.all(chunks.map((c) => fs.rm(c.temp, { force: true })));
      for (const d of dirs) this.dirtyDirs.add(d);
      throw err;
    } finally {
      for (const c of chunks) {
        const hex = path.basename(c.file);
        if (this.pending.get(hex) === c) this.pending.delete(hex);
      }
    }
  }

  /**
   * Deletes the chunk if it was last written or refreshed before `cutoffMs` (file-system clock). Safe against a
   * concurrent refresh(): the blob is first renamed to a trash name, its time checked again, and put back if a
   * writer touched it in between (a writer refreshing after the rename sees it missing and stores it again).
   * Returns the bytes freed, or undefined when the chunk was kept or is absent.
   */
  async deleteIfUnusedSince(id: Buffer, cutoffMs: number): Promise<number | undefined> {
    const file = this.pathOf(id);
    const before = await statOrUndefined(file);
    if (!before || before.mtimeMs >= cutoffMs) return undefined;
    const trash = path.join(path.dirname(file), `.${path.basename(file)}${GC_TRASH_MARKER}${randomBytes(6).toString('hex')}`);
    try {
      await fs.rename(file, trash);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    return this.settleTrash(trash, file, cutoffMs);
  }

  /** Finishes a trash file: deleted when still unused since `cutoffMs`, else put back (never over a newer blob). */
  async settleTrash(trash: string, file: string, cutoffMs: number): Promise<number | undefined> {
    const after = await statOrUndefined(trash);
    if (!after) return undefined;
    if (after.mtimeMs >= cutoffMs) {
      await fs.link(trash, file).catch((err: unknown) => {
        if (!isErrno(err, 'EEXIST')) throw err;
      });
      await fs.rm(trash, { force: true });
      return undefined;
    }
    await fs.rm(trash, { force: true });
    return after.size;
  }
}

/** Writes a new file (never an existing one) from a blob or its parts, in one write(v) call when it can. */
async function writeNew(file: string, blob: BlobData): Promise<void> {
  if (Buffer.isBuffer(blob)) return fs.writeFile(file, blob, { flag: 'wx' });
  const handle = await fs.open(file, 'wx');
  try {
    let rest = blob.filter((b) => b.length > 0);
    while (rest.length) {
      let { bytesWritten } = await handle.writev(rest);
      if (bytesWritten <= 0) throw new RepositoryError(`could not write ${file}`, 'SHORT_WRITE');
      // A short write(v): go on with what is left.
      const left: Buffer[] = [];
      for (const b of rest) {
        if (bytesWritten >= b.length) bytesWritten -= b.length;
        else {
          left.push(b.subarray(bytesWritten));
          bytesWritten = 0;
        }
      }
      rest = left;
    }
  } finally {
    await handle.close();
  }
}

/** A whole file in a buffer of its own (transferable to a worker thread without a copy). */
async function readWhole(file: string): Promise<Buffer> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const buf = Buffer.allocUnsafeSlow(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(buf, done, size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === size ? buf : buf.subarray(0, done);
  } finally {
    await handle.close();
  }
}

async function statOrUndefined(file: string) {
  try {
    return await fs.stat(file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
