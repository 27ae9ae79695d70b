/**
 * The repository's list of chunks verify found bad (`bad-chunks/<id>`, one small JSON file each, so concurrent
 * verifiers and writers never rewrite a shared file). A backup that meets such a chunk stores it again instead
 * of deduplicating against it, then takes it off the list.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic';
import { CHUNK_ID_BYTES } from './constants';

export interface BadChunkRecord {
  id: string;
  reason: string;
  detectedAt: string;
}

const ID_PATTERN = new RegExp(`^[0-9a-f]{${CHUNK_ID_BYTES * 2}}$`);

export class BadChunkList {
  constructor(readonly dir: string) {}

  /** Hex ids of the chunks on the list. */
  async ids(): Promise<Set<string>> {
    try {
      return new Set((await fs.readdir(this.dir)).filter((n) => ID_PATTERN.test(n)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw err;
    }
  }

  async list(): Promise<BadChunkRecord[]> {
    const out: BadChunkRecord[] = [];
    for (const id of [...(await this.ids())].sort()) {
      let reason = 'unknown';
      let detectedAt = '';
      try {
        const v = JSON.parse(await fs.readFile(path.join(this.dir, id), 'utf8')) as Partial<BadChunkRecord>;
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
    await fs.mkdir(this.dir, { recursive: true });
    const record: BadChunkRecord = { id, reason, detectedAt: new Date().toISOString() };
    await writeFileAtomic(path.join(this.dir, id), JSON.stringify(record) + '\n');
  }

  async remove(id: string): Promise<void> {
    if (!ID_PATTERN.test(id)) return;
    await fs.rm(path.join(this.dir, id), { force: true });
  }
}
