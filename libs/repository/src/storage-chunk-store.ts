/**
 * The chunk store on any ObjectStorage (used for S3): `chunks/<first 4 hex chars>/<64 hex chars>`, the same keys
 * as the folder layout. Chunks are created once (conditional put, see ObjectStorage.putIfAbsent). Garbage
 * collection on object storage does not rely on refresh (FORMAT.md, "Object storage").
 */
import { CHUNKS_DIR, CHUNK_FANOUT_CHARS, CHUNK_ID_BYTES } from './constants';
import { BlobData, ChunkStore, wholeBlob } from './chunk-store';
import { MissingChunkError, RepositoryError } from './errors';
import type { ObjectStorage } from './storage';

/** The storage key of a chunk. */
export function chunkKey(id: Buffer): string {
  if (id.length !== CHUNK_ID_BYTES) {
    throw new RepositoryError(`chunk id must be ${CHUNK_ID_BYTES} bytes, got ${id.length}`, 'INVALID_CHUNK_ID');
  }
  const hex = id.toString('hex');
  return `${CHUNKS_DIR}/${hex.slice(0, CHUNK_FANOUT_CHARS)}/${hex}`;
}

export class StorageChunkStore implements ChunkStore {
  constructor(readonly storage: ObjectStorage) {}

  async has(id: Buffer): Promise<boolean> {
    return (await this.storage.stat(chunkKey(id))) !== undefined;
  }

  async get(id: Buffer): Promise<Buffer> {
    const blob = await this.storage.get(chunkKey(id));
    if (!blob) throw new MissingChunkError(id.toString('hex'));
    return blob;
  }

  /**
   * Only checks the chunk exists: on object storage garbage collection never runs alongside writers (it holds
   * the exclusive lock writers respect), so nothing needs a fresh time; a self-copy would also cost a request,
   * and in a versioned (Object Lock) bucket a new version of the chunk.
   */
  refresh(id: Buffer): Promise<boolean> {
    return this.has(id);
  }

  async insert(id: Buffer, blob: BlobData, opts: { overwrite?: boolean } = {}): Promise<{ existed: boolean }> {
    const key = chunkKey(id);
    const whole = wholeBlob(blob); // one object, one request
    if (opts.overwrite) {
      await this.storage.put(key, whole);
      return { existed: false };
    }
    return { existed: !(await this.storage.putIfAbsent(key, whole)) };
  }

  /** Nothing to wait for: every put is durable when it returns. */
  async flush(): Promise<void> {}

  syncMark(): number {
    return 0;
  }

  /** Every stored chunk (hex id, size, time) — for garbage collection and statistics. */
  async list(): Promise<{ hex: string; size: number; mtimeMs: number }[]> {
    const idHex = new RegExp(`^${CHUNKS_DIR}/[0-9a-f]{${CHUNK_FANOUT_CHARS}}/([0-9a-f]{${CHUNK_ID_BYTES * 2}})$`);
    const out: { hex: string; size: number; mtimeMs: number }[] = [];
    for (const o of await this.storage.list(`${CHUNKS_DIR}/`)) {
      const m = idHex.exec(o.key);
      if (m) out.push({ hex: m[1], size: o.size, mtimeMs: o.mtimeMs });
    }
    return out;
  }

  async delete(id: Buffer): Promise<void> {
    await this.storage.delete(chunkKey(id));
  }
}
