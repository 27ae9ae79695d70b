/**
 * Where the index lives: next to the chunks of the repository, under its own prefix of the same ObjectStorage.
 *   file-index/pages/<id[0..2]>/<id>   a page (content-addressed, shared by every point that has it)
 *   file-index/points/<pointId>.json   a point's record (page list, volumes, warnings), written last
 * In an encrypted repository both are sealed with keys derived from the master keys (README, Format).
 */
import { FsStorage, type ObjectStorage, type Repository } from '@vmkeep/repository';
import { FileIndexError } from './errors';
import { decodePage, encryptedError, isSealed, SEALED_MAGIC, type EncodedPage } from './page';
import type { IndexEntry, IndexSealer, PointIndexRecord } from './types';

const PREFIX = 'file-index/';
const PAGE_ID = /^[0-9a-f]{64}$/;
const POINT_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** Purpose of the keys an encrypted repository derives for its index. */
const SUBKEY_PURPOSE = 'file-index';
const recordAad = (pointId: string) => `vmkeep-file-index-record ${pointId}`;

export interface FileIndexStoreOptions {
  /** The index keys of an encrypted repository: pages and records are sealed, page ids are HMACs. */
  sealer?: IndexSealer;
  /** Most decoded entries kept in the page cache (default 200,000). */
  cacheEntries?: number;
}

export interface IndexGcReport {
  pointsRemoved: number;
  pagesRemoved: number;
  pagesKept: number;
}

export class FileIndexStore {
  /** Decoded pages, most recently used last; bounded by `cacheEntries` entries in all. */
  private readonly cache = new Map<string, IndexEntry[]>();
  private cached = 0;
  private readonly cacheEntries: number;
  readonly sealer?: IndexSealer;

  constructor(
    readonly storage: ObjectStorage,
    opts: FileIndexStoreOptions = {},
  ) {
    this.cacheEntries = opts.cacheEntries ?? 200_000;
    this.sealer = opts.sealer;
  }

  /**
   * The index of an opened repository, in its storage (folder or S3); encrypted with keys derived from its master
   * keys when the repository is encrypted.
   */
  static forRepository(repo: Repository, opts: Omit<FileIndexStoreOptions, 'sealer'> = {}): FileIndexStore {
    return new FileIndexStore(repo.storage, { ...opts, sealer: repo.subkeySealer(SUBKEY_PURPOSE) });
  }

  /**
   * The index of a local, unencrypted repository folder (the same folder as the repository's chunks). Reading an
   * encrypted repository's index this way fails with FileIndexError ENCRYPTED: use `forRepository`.
   */
  static forRepositoryFolder(repositoryPath: string): FileIndexStore {
    return new FileIndexStore(new FsStorage(repositoryPath));
  }

  /** Whether pages and records are sealed (an encrypted repository). */
  get encrypted(): boolean {
    return this.sealer !== undefined;
  }

  static pageKey(id: string): string {
    if (!PAGE_ID.test(id)) throw new FileIndexError(`invalid index page id ${JSON.stringify(id)}`, 'PAGE_CORRUPT');
    return `${PREFIX}pages/${id.slice(0, 2)}/${id}`;
  }

  static pointKey(pointId: string): string {
    if (!POINT_ID.test(pointId)) throw new FileIndexError(`invalid restore point id ${JSON.stringify(pointId)}`, 'BAD_POINT_ID');
    return `${PREFIX}points/${pointId}.json`;
  }

  /**
   * Stores a page unless a page with its id exists; true when it was new. An existing page is touched, so a
   * garbage collection running meanwhile (which spares pages younger than its grace period) cannot remove it
   * before this point's record references it.
   */
  async putPage(page: EncodedPage): Promise<boolean> {
    const key = FileIndexStore.pageKey(page.id);
    if (await this.storage.putIfAbsent(key, page.data)) return true;
    if (!(await this.storage.touch(key))) await this.storage.put(key, page.data); // removed in between
    return false;
  }

  async getPage(id: string): Promise<IndexEntry[]> {
    const hit = this.cache.get(id);
    if (hit) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      return hit;
    }
    const data = await this.storage.get(FileIndexStore.pageKey(id));
    if (!data) throw new FileIndexError(`index page ${id} is missing`, 'PAGE_MISSING');
    const entries = decodePage(id, data, this.sealer);
    this.remember(id, entries);
    return entries;
  }

  private remember(id: string, entries: IndexEntry[]): void {
    if (entries.length > this.cacheEntries) return;
    this.cache.set(id, entries);
    this.cached += entries.length;
    for (const [old, list] of this.cache) {
      if (this.cached <= this.cacheEntries) break;
      this.cache.delete(old);
      this.cached -= list.length;
    }
  }

  private forget(id: string): void {
    const list = this.cache.get(id);
    if (!list) return;
    this.cache.delete(id);
    this.cached -= list.length;
  }

  async putPoint(record: PointIndexRecord): Promise<void> {
    const key = FileIndexStore.pointKey(record.pointId);
    const json = Buffer.from(JSON.stringify(record), 'utf8');
    await this.storage.put(key, this.sealer ? Buffer.concat([SEALED_MAGIC, this.sealer.seal(json, recordAad(record.pointId))]) : json);
  }

  /** The point's record, or undefined when the point was never indexed. */
  async getPoint(pointId: string): Promise<PointIndexRecord | undefined> {
    const stored = await this.storage.get(FileIndexStore.pointKey(pointId));
    if (!stored) return undefined;
    let data = stored;
    if (this.sealer) {
      const opened = isSealed(stored) ? this.sealer.open(stored.subarray(SEALED_MAGIC.length), recordAad(pointId)) : undefined;
      if (!opened) throw new FileIndexError(`the file index record of point ${pointId} cannot be authenticated`, 'RECORD_CORRUPT');
      data = opened;
    } else if (isSealed(stored)) {
      throw encryptedError(`the file index record of point ${pointId}`);
    }
    let record: PointIndexRecord;
    try {
      record = JSON.parse(data.toString('utf8')) as PointIndexRecord;
    } catch {
      throw new FileIndexError(`the file index record of point ${pointId} is not JSON`, 'RECORD_CORRUPT');
    }
    const ok = record && record.version === 1 && record.pointId === pointId && Array.isArray(record.pages) &&
      record.pages.every((p) => p && typeof p.id === 'string' && PAGE_ID.test(p.id) && Number.isInteger(p.entries)) &&
      Array.isArray(record.warnings) && Array.isArray(record.volumes);
    if (!ok) throw new FileIndexError(`the file index record of point ${pointId} is malformed`, 'RECORD_CORRUPT');
    return record;
  }

  /** Ids of the points that have a record. */
  async listPoints(): Promise<string[]> {
    const objects = await this.storage.list(`${PREFIX}points/`);
    return objects
      .map((o) => o.key.slice(`${PREFIX}points/`.length))
      .filter((name) => name.endsWith('.json'))
      .map((name) => name.slice(0, -'.json'.length));
  }

  /**
   * Removes the records of points that are gone, then pages no record references and older than `graceMs` (a
   * page written by an indexer still running has no record yet; the grace period keeps it).
   */
  async collectGarbage(livePointIds: Iterable<string>, opts: { graceMs?: number } = {}): Promise<IndexGcReport> {
    const live = new Set(livePointIds);
    const report: IndexGcReport = { pointsRemoved: 0, pagesRemoved: 0, pagesKept: 0 };
    const referenced = new Set<string>();
    for (const pointId of await this.listPoints()) {
      if (!live.has(pointId)) {
        await this.storage.delete(FileIndexStore.pointKey(pointId));
        report.pointsRemoved++;
        continue;
      }
      const record = await this.getPoint(pointId).catch(() => undefined);
      if (!record) return report; // a damaged record: keep every page rather than guess
      for (const p of record.pages) referenced.add(p.id);
    }
    const cutoff = (await this.storage.now()) - (opts.graceMs ?? 60 * 60_000);
    for (const object of await this.storage.list(`${PREFIX}pages/`)) {
      const id = object.key.slice(object.key.lastIndexOf('/') + 1);
      if (referenced.has(id) || object.mtimeMs > cutoff) {
        report.pagesKept++;
        continue;
      }
      await this.storage.delete(object.key);
      this.forget(id);
      report.pagesRemoved++;
    }
    return report;
  }
}
