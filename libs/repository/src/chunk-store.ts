/** The chunk store: content-addressed blobs, written once, read many times. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, writeFileAtomic } from './atomic';
import { CHUNK_FANOUT_CHARS, CHUNK_ID_BYTES } from './constants';
import { MissingChunkError, RepositoryError } from './errors';

export interface ChunkStore {
  has(id: Buffer): Promise<boolean>;
  /** The stored blob; MissingChunkError when absent. */
  get(id: Buffer): Promise<Buffer>;
  /** Stores the blob unless a chunk with this id exists; `existed` tells which happened. */
  insert(id: Buffer, blob: Buffer): Promise<{ existed: boolean }>;
}

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

  async insert(id: Buffer, blob: Buffer): Promise<{ existed: boolean }> {
    if (await this.has(id)) return { existed: true };
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
}
