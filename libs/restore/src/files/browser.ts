/**
 * Browsing the guest file systems of one restore point: its disks' volumes (partitions, and LVM2 logical volumes
 * assembled across the disks) numbered 0… in the order listVolumesOfVm gives them, each with its file system
 * opened (or the reason it cannot be); volumes and disks that could not be read are listed last with their error.
 * Pure: no Nest.
 */
import { VmkeepError } from '@vmkeep/contracts';
import type { Disk } from '@vmkeep/disk';
import {
  FileSystemError,
  PathError,
  ReadCacheDisk,
  UnsupportedFileSystemError,
  listVolumesOfVm,
  openFileSystem,
  type DirEntry,
  type FileStat,
  type FileSystem,
  type ReaddirResult,
} from '@vmkeep/filesystems';
import { childPath, normalizeGuestPath } from './paths';

export interface VolumeView {
  /** Number used in the API and CLI (0…, across all disks). */
  volume: number;
  /** Stable name: "disk0/1" (first disk, partition 1), "lvm/VG/LV", or what failed ("disk1", "lvm/VG/LV"). */
  id: string;
  /** Key of the disk holding it; null for a logical volume (or a failure not tied to one disk). */
  diskKey: string | null;
  /** Partition number on its disk (0 for a whole-disk volume or a logical volume). */
  partition: number;
  scheme: string;
  partitionType: string;
  partitionName: string;
  /** Byte offset on the disk and size. */
  start: number;
  size: number;
  fileSystem: { type: string; label: string; uuid: string; size: number; dirty: boolean; warnings: string[] } | null;
  /** Why no file system is shown (unsupported, damaged, empty). */
  error: string | null;
}

export type SortKey = 'name' | 'size' | 'mtime';

export interface ListOptions {
  offset?: number;
  limit?: number;
  sort?: SortKey;
  order?: 'asc' | 'desc';
}

export interface DirPage {
  path: string;
  entries: { name: string; type: string; size: number; mode: number; mtime: string | null; error?: string }[];
  /** Entries in the folder when it was read whole (sorted listings); null when paging in on-disk order. */
  total: number | null;
  nextOffset: number | null;
}

/** Most entries a sorted listing reads (a sorted page needs the whole folder). */
export const MAX_SORTED_ENTRIES = 1_000_000;
export const MAX_PAGE = 5000;
/** Metadata read cache per disk of an open browser (sessions: at most 16 open). */
const BROWSE_CACHE_BYTES = 32 * 1024 * 1024;

/** Turns the readers' errors into API errors: bad paths 400/404, damaged or unsupported metadata 422-like "invalid". */
export function toVmkeepError(err: unknown): unknown {
  if (err instanceof PathError) return new VmkeepError(err.message, err.code === 'ENOENT' ? 'not_found' : 'invalid');
  if (err instanceof UnsupportedFileSystemError) return new VmkeepError(err.message, 'unsupported');
  if (err instanceof FileSystemError) return new VmkeepError(`damaged file system metadata: ${err.message}`, 'damaged');
  return err;
}

export async function translate<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw toVmkeepError(err);
  }
}

function isoTime(ms: number): string | null {
  return Number.isFinite(ms) && ms !== 0 ? new Date(ms).toISOString() : null;
}

export function entryView(e: DirEntry) {
  return { name: e.name, type: e.stat.type, size: e.stat.size, mode: e.stat.mode, mtime: isoTime(e.stat.mtimeMs), ...(e.error ? { error: e.error } : {}) };
}

export function statView(path: string, s: FileStat) {
  return { path, type: s.type, size: s.size, mode: s.mode, uid: s.uid, gid: s.gid, mtime: isoTime(s.mtimeMs), atime: isoTime(s.atimeMs), ctime: isoTime(s.ctimeMs), nlink: s.nlink, inode: s.inode };
}

function compare(sort: SortKey): (a: DirEntry, b: DirEntry) => number {
  if (sort === 'size') return (a, b) => a.stat.size - b.stat.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  if (sort === 'mtime') return (a, b) => a.stat.mtimeMs - b.stat.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * Entries [offset, offset + limit) of `all` in `cmp` order (stable). A page near the start is selected in one pass
 * (keeping the best offset + limit, most entries rejected by one comparison) instead of sorting the whole folder.
 */
export function sortedSlice<T>(all: T[], cmp: (a: T, b: T) => number, offset: number, limit: number): T[] {
  const k = offset + limit;
  if (k * 8 >= all.length) return [...all].sort(cmp).slice(offset, k);
  const best: T[] = [];
  for (const e of all) {
    if (best.length === k && cmp(e, best[k - 1]) >= 0) continue;
    let lo = 0;
    let hi = best.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(best[mid], e) <= 0) lo = mid + 1;
      else hi = mid;
    }
    best.splice(lo, 0, e);
    if (best.length > k) best.pop();
  }
  return best.slice(offset);
}

/**
 * What the callers of a browse session use: `FileBrowser` (in this thread) and `ThreadedFileBrowser` (a worker
 * thread holds the file systems) both provide it.
 */
export type BrowseView = Pick<FileBrowser, 'volumes' | 'fileSystem' | 'list' | 'stat' | 'readlink' | 'close'>;

export class FileBrowser {
  private constructor(
    private readonly disks: Disk[],
    readonly volumes: VolumeView[],
    private readonly fileSystems: (FileSystem | null)[],
  ) {}

  /**
   * Reads the partition tables and opens every file system; the browser owns (and closes) the disks. Small reads
   * (metadata) go through a read cache per disk: a big folder's inodes are otherwise read in an order that makes
   * the repository load a chunk per inode.
   */
  static async open(disks: { key: string; disk: Disk }[]): Promise<FileBrowser> {
    const views: VolumeView[] = [];
    const fileSystems: (FileSystem | null)[] = [];
    const cached = disks.map((d) => new ReadCacheDisk(d.disk, { capacityBytes: BROWSE_CACHE_BYTES }));
    const listed = await translate(listVolumesOfVm(cached));
    for (const { id, disk, volume: v } of listed.volumes) {
      let fs: FileSystem | null = null;
      let error: string | null = null;
      try {
        fs = await openFileSystem(v);
      } catch (err) {
        const e = toVmkeepError(err);
        error = e instanceof Error ? e.message : String(e);
      }
      views.push({
        volume: views.length,
        id,
        diskKey: disk === null ? null : disks[disk].key,
        partition: v.scheme === 'lvm' ? 0 : v.index,
        scheme: v.scheme,
        partitionType: v.type,
        partitionName: v.name,
        start: v.start,
        size: v.size,
        fileSystem: fs ? { type: fs.type, label: fs.label, uuid: fs.uuid, size: fs.size, dirty: fs.dirty, warnings: fs.warnings } : null,
        error,
      });
      fileSystems.push(fs);
    }
    for (const f of listed.failed) {
      const disk = /^disk(\d+)/.exec(f.id);
      views.push({
        volume: views.length,
        id: f.id,
        diskKey: disk ? (disks[Number(disk[1])]?.key ?? null) : null,
        partition: 0,
        scheme: f.id.startsWith('lvm/') ? 'lvm' : 'none',
        partitionType: '',
        partitionName: '',
        start: 0,
        size: 0,
        fileSystem: null,
        error: f.error.message,
      });
      fileSystems.push(null);
    }
    return new FileBrowser(cached, views, fileSystems);
  }

  /** The file system of volume `n`, or a typed error. */
  fileSystem(n: number): FileSystem {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.volumes.length) {
      throw new VmkeepError(`no volume ${n} (this restore point has ${this.volumes.length})`, 'not_found');
    }
    const fs = this.fileSystems[n];
    if (!fs) throw new VmkeepError(`volume ${n} has no readable file system: ${this.volumes[n].error ?? 'unknown'}`, 'invalid');
    return fs;
  }

  /** One page of a folder: in on-disk order without `sort`, else the whole folder read, sorted and sliced. */
  async list(n: number, rawPath: string | undefined, o: ListOptions = {}): Promise<DirPage> {
    const fs = this.fileSystem(n);
    const path = normalizeGuestPath(rawPath);
    const offset = o.offset ?? 0;
    const limit = Math.min(o.limit ?? 1000, MAX_PAGE);
    if (!o.sort) {
      const page = await translate(fs.readdir(path, { offset, limit }));
      return { path, entries: page.entries.map(entryView), total: null, nextOffset: page.nextOffset };
    }
    if (o.sort === 'name' && fs.readdirNames) return this.listByName(fs, path, offset, limit, o.order === 'desc');
    // One pass over the folder: a readdir page restarts the folder's entry scan at its beginning, so reading it
    // in slices would scan a 100,000-entry folder twenty times.
    const whole: ReaddirResult = await translate(fs.readdir(path, { offset: 0, limit: MAX_SORTED_ENTRIES }));
    if (whole.nextOffset !== null) {
      throw new VmkeepError(`folder ${path} has more than ${MAX_SORTED_ENTRIES} entries: list it unsorted`, 'invalid');
    }
    const all = whole.entries;
    const ascending = compare(o.sort);
    const slice = sortedSlice(all, o.order === 'desc' ? (a, b) => ascending(b, a) : ascending, offset, limit);
    return { path, entries: slice.map(entryView), total: all.length, nextOffset: offset + limit < all.length ? offset + limit : null };
  }

  /**
   * A page sorted by name without reading every entry's metadata: the folder's names only, the page picked from
   * them, then only its entries looked up. An entry that cannot be read is listed with its error, as readdir does.
   */
  private async listByName(fs: FileSystem, path: string, offset: number, limit: number, desc: boolean): Promise<DirPage> {
    const { names, complete } = await translate(fs.readdirNames!(path, MAX_SORTED_ENTRIES));
    if (!complete) throw new VmkeepError(`folder ${path} has more than ${MAX_SORTED_ENTRIES} entries: list it unsorted`, 'invalid');
    const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const page = sortedSlice(names, desc ? (a, b) => byName(b, a) : byName, offset, limit);
    const entries: DirPage['entries'] = [];
    for (const name of page) {
      try {
        entries.push(entryView({ name, stat: await fs.stat(childPath(path, name)) }));
      } catch (err) {
        if (!(err instanceof FileSystemError) && !(err instanceof PathError)) throw toVmkeepError(err);
        entries.push({ name, type: 'unknown', size: 0, mode: 0, mtime: null, error: err.message });
      }
    }
    return { path, entries, total: names.length, nextOffset: offset + limit < names.length ? offset + limit : null };
  }

  async stat(n: number, rawPath: string | undefined) {
    const path = normalizeGuestPath(rawPath);
    return statView(path, await translate(this.fileSystem(n).stat(path)));
  }

  async readlink(n: number, rawPath: string | undefined): Promise<{ path: string; target: string }> {
    const path = normalizeGuestPath(rawPath);
    return { path, target: await translate(this.fileSystem(n).readlink(path)) };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.disks.map((d) => d.close()));
  }
}
