/**
 * The repository's list of chunks verify found bad (`bad-chunks/<id>`, one small JSON file each, so concurrent
 * verifiers and writers never rewrite a shared file). A backup that meets such a chunk stores it again instead
 * of deduplicating against it, then takes it off the list.
 */
import { BAD_CHUNKS_DIR, CHUNK_ID_BYTES } from './constants';
import type { ObjectStorage } from './storage';

export interface BadChunkRecord {
  id: string;
  reason: string;
  detectedAt: string;
}

const ID_PATTERN = new RegExp(`^[0-9a-f]{${CHUNK_ID_BYTES * 2}}$`);

export class BadChunkList {
  constructor(readonly storage: ObjectStorage) {}

  private keyOf(id: string): string {
    return `${BAD_CHUNKS_DIR}/${id}`;
  }

  /** Hex ids of the chunks on the list. */
  async ids(): Promise<Set<string>> {
    const names = (await this.storage.list(`${BAD_CHUNKS_DIR}/`)).map((o) => o.key.slice(BAD_CHUNKS_DIR.length + 1));
    return new Set(names.filter((n) => ID_PATTERN.test(n)));
  }

  async list(): Promise<BadChunkRecord[]> {
    const out: BadChunkRecord[] = [];
    for (const id of [...(await this.ids())].sort()) {
      let reason = 'unknown';
      let detectedAt = '';
      try {
        const v = JSON.parse((await this.storage.get(this.keyOf(id)))?.toString('utf8') ?? '') as Partial<BadChunkRecord>;
        if (typeof v.reason === 'string') reason = v.reason;
        if (typeof v.detectedAt === 'string') detectedAt = v.detectedAt;
      } catch {
        // A damaged or vanished record still names the chunk; keep the entry.
      }
      out.push({ id, reason, detectedAt });
    }
    return out;
  }

  async add(id: string, reason: string): Promise<void> {
    if (!ID_PATTERN.test(id)) throw new RangeError(`not a chunk id: ${id}`);
    const record: BadChunkRecord = { id, reason, detectedAt: new Date().toISOString() };
    await this.storage.put(this.keyOf(id), JSON.stringify(record) + '\n');
  }

  async remove(id: string): Promise<void> {
    if (!ID_PATTERN.test(id)) return;
    await this.storage.delete(this.keyOf(id));
  }
}
