/** The chunk store: content-addressed blobs, written once, read many times. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, writeFileAtomic } from './atomic';
import { CHUNK_FANOUT_CHARS, CHUNK_ID_BYTES, GC_TRASH_MARKER } from './constants';
import { MissingChunkError, RepositoryError } from './errors';

export interface ChunkStore {
  has(id: Buffer): Promise<boolean>;
  /** The stored blob; MissingChunkError when absent. */
  get(id: Buffer): Promise<Buffer>;
  /**
   * Stores the blob unless a chunk with this id exists; `existed` tells which happened. `overwrite` replaces an
   * existing blob (a chunk verify found bad).
   */
  insert(id: Buffer, blob: Buffer, opts?: { overwrite?: boolean }): Promise<{ existed: boolean }>;
  /**
   * Whether the chunk exists, marking it as used now when it does: a writer that deduplicates against a chunk
   * calls this so a concurrent garbage collection keeps the chunk (FORMAT.md, garbage collection).
   */
  refresh(id: Buffer): Promise<boolean>;
}

const isErrno = (err: unknown, code: string) => (err as NodeJS.ErrnoException | undefined)?.code === code;

function checkId(id: Buffer): string {
  if (id.length !== CHUNK_ID_BYTES) {
    throw new RepositoryError(`chunk id must be ${CHUNK_ID_BYTES} bytes, got ${id.length}`, 'INVALID_CHUNK_ID');
  }
  return id.toString('hex');
}

/** Chunk store in a local folder: `<dir>/<first 4 hex chars>/<64 hex chars>`, atomic writes. */
export class FsChunkStore implements ChunkStore {
  private readonly knownDirs = new Set<string>();

  constructor(readonly dir: string) {}

  /** Path of a chunk's blob file. */
  pathOf(id: Buffer): string {
    const hex = checkId(id);
    return path.join(this.dir, hex.slice(0, CHUNK_FANOUT_CHARS), hex);
  }

  async has(id: Buffer): Promise<boolean> {
    try {
      await fs.access(this.pathOf(id));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async get(id: Buffer): Promise<Buffer> {
    try {
      return await fs.readFile(this.pathOf(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingChunkError(id.toString('hex'));
      throw err;
    }
  }

  async refresh(id: Buffer): Promise<boolean> {
    const now = new Date();
    try {
      await fs.utimes(this.pathOf(id), now, now);
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async insert(id: Buffer, blob: Buffer, opts: { overwrite?: boolean } = {}): Promise<{ existed: boolean }> {
    if (!opts.overwrite && (await this.has(id))) return { existed: true };
    const file = this.pathOf(id);
    const dir = path.dirname(file);
    if (!this.knownDirs.has(dir)) {
      // A newly created fan-out folder must itself survive a crash before chunks in it count as stored.
      if (await fs.mkdir(dir, { recursive: true })) await fsyncDir(this.dir);
      this.knownDirs.add(dir);
    }
    // Two writers racing on the same id both rename identical content into place: harmless.
    await writeFileAtomic(file, blob);
    return { existed: false };
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

async function statOrUndefined(file: string) {
  try {
    return await fs.stat(file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
