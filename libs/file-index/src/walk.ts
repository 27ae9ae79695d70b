/**
 * Walks every file system of a set of disks in a fixed order: disks as given, volumes by partition index, and
 * inside a file system a depth-first walk visiting each folder's entries sorted by name. The order is the
 * index's sort order, so pages come out sorted without holding the whole listing in memory.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Disk } from '@vmkeep/disk';
import type { OpenDiskOptions } from '@vmkeep/repository';
import { ExtFileSystem, listVolumes, openFileSystem, ReadCacheDisk, UnsupportedFileSystemError, type DirEntry, type FileSystem } from '@vmkeep/filesystems';
import type { IndexEntry, IndexedType, IndexedVolume } from './types';

/**
 * How callers open a point's disks for the walk (`Repository.openDisk`): it reads scattered metadata, never file
 * contents, so the disk loads no chunks ahead of it.
 */
export const INDEX_DISK: OpenDiskOptions = { readAhead: false };

export interface WalkTarget {
  /** The disk's key in the restore point ("disk-2000"). */
  key: string;
  disk: Disk;
}

export interface WalkLimits {
  /** Stop after this many entries in all (the index is then marked partial). */
  maxEntries: number;
  /** Folders deeper than this are not entered. */
  maxDepth: number;
  /** Entries read from one folder at most. */
  maxFolderEntries: number;
}

export const DEFAULT_WALK_LIMITS: WalkLimits = { maxEntries: 20_000_000, maxDepth: 256, maxFolderEntries: 2_000_000 };

/** What the walk found besides the entries. */
export interface WalkReport {
  volumes: IndexedVolume[];
  warnings: string[];
  partial: boolean;
}

/** Entries per batch: between batches the walk checks for cancellation and lets the event loop run. */
const PAGE = 1000;
/**
 * Entries per readdir call. A call rescans its folder from the first entry up to its offset, so pages are large
 * (a 100,000-entry folder takes two calls, not a hundred); paging still keeps what was read before a damaged block.
 */
const FOLDER_PAGE = 65_536;
/**
 * Folder listings the walk starts ahead of the one it enters, per level and in all. Each costs the chunk loads of
 * its folder's blocks (scattered among file data on a real disk: a chunk or more per folder) and holds the listing
 * until the walk gets there.
 */
const PREFETCH_FOLDERS = 4;
const MAX_PREFETCHED = 16;
/** Metadata read cache per disk while indexing. */
const INDEX_CACHE_BYTES = 64 * 1024 * 1024;

/** Code-unit order, the same on every machine (no locale). */
const byName = (a: DirEntry, b: DirEntry) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function typeOf(entry: DirEntry): IndexedType {
  const t = entry.stat.type;
  return t === 'file' || t === 'directory' || t === 'symlink' ? t : 'other';
}

const finite = (n: number) => (Number.isFinite(n) ? Math.trunc(n) : 0);

function message(err: unknown): string {
  // "btrfs: file system: Btrfs is not supported yet" → the reason alone.
  if (err instanceof UnsupportedFileSystemError) return err.message.slice(err.message.indexOf(`${err.structure}: `) + err.structure.length + 2);
  return err instanceof Error ? err.message : String(err);
}

/** Yields the entries of every file system of `targets`; problems go to `report.warnings`, never thrown. */
export async function* walkDisks(
  targets: readonly WalkTarget[],
  report: WalkReport,
  opts: { limits?: Partial<WalkLimits>; signal?: AbortSignal } = {},
): AsyncGenerator<IndexEntry> {
  for await (const batch of walkDiskBatches(targets, report, opts)) yield* batch;
}

/**
 * `walkDisks` in batches of up to 1000 entries (what the indexer consumes: no promise per entry). Between
 * batches it checks `signal` and lets the event loop run.
 */
export async function* walkDiskBatches(
  targets: readonly WalkTarget[],
  report: WalkReport,
  opts: { limits?: Partial<WalkLimits>; signal?: AbortSignal } = {},
): AsyncGenerator<IndexEntry[]> {
  const limits = { ...DEFAULT_WALK_LIMITS, ...opts.limits };
  const budget: Budget = { left: limits.maxEntries, exceeded: false };
  for (const target of targets) {
    let volumes;
    try {
      // Metadata through a read cache: folder order is not inode order (htree), and each miss costs a chunk load.
      const listed = await listVolumes(new ReadCacheDisk(target.disk, { capacityBytes: INDEX_CACHE_BYTES }));
      volumes = listed.volumes;
      for (const w of listed.warnings) report.warnings.push(`${target.key}: ${w}`);
    } catch (err) {
      report.warnings.push(`${target.key}: partition table unreadable: ${message(err)}`);
      continue;
    }
    for (const volume of [...volumes].sort((a, b) => a.index - b.index)) {
      const name = `${target.key}:${volume.index}`;
      let fs: FileSystem;
      try {
        fs = await openFileSystem(volume);
      } catch (err) {
        report.warnings.push(`${name}: not indexed: ${message(err)}`);
        report.volumes.push({ volume: name, fsType: '', label: '', entries: 0, dirty: false });
        continue;
      }
      // ext: every inode's stat in one sequential pass over the inode tables instead of a read per entry.
      if (fs instanceof ExtFileSystem) await fs.preloadInodes({ signal: opts.signal });
      for (const w of fs.warnings) report.warnings.push(`${name} (${fs.type}): ${w}`);
      const summary: IndexedVolume = { volume: name, fsType: fs.type, label: fs.label, entries: 0, dirty: fs.dirty };
      report.volumes.push(summary);
      for await (const batch of walkFileSystem(fs, name, report, limits, budget)) {
        opts.signal?.throwIfAborted();
        summary.entries += batch.length;
        yield batch;
        // Cached metadata reads resolve without I/O; let timers and sockets (job lock renewal) run meanwhile.
        await yieldToEventLoop();
      }
      if (budget.exceeded) {
        report.partial = true;
        report.warnings.push(`index stopped at ${limits.maxEntries} entries`);
        return;
      }
    }
  }
}

/** Entries the walk may still yield; `exceeded` once one more was found. */
export interface Budget {
  left: number;
  exceeded: boolean;
}

interface Frame {
  path: string;
  children: DirEntry[];
  next: number;
}

/** @internal One file system in walk order, in batches (exported for its spec). */
export async function* walkFileSystem(fs: FileSystem, volume: string, report: WalkReport, limits: WalkLimits, budget: Budget): AsyncGenerator<IndexEntry[]> {
  const warn = (text: string) => {
    report.warnings.push(`${volume}: ${text}`);
    report.partial = true;
  };
  // Listings of the folders the walk enters next, started early so their reads (chunk loads) overlap this one's.
  const prefetched = new Map<string, Promise<Listing>>();
  const listing = async (path: string) => {
    const pending = prefetched.get(path);
    prefetched.delete(path);
    const { entries, warnings } = await (pending ?? listFolder(fs, path, limits));
    warnings.forEach(warn); // when the walk gets there: the same order however the reads interleave
    return entries;
  };
  // The next PREFETCH_FOLDERS folders of the frame being walked (so the deepest level, the one entered next, is
  // always served), at most MAX_PREFETCHED in all.
  const prefetch = (frame: Frame, depth: number) => {
    if (depth >= limits.maxDepth) return;
    let ahead = 0;
    for (let k = frame.next; k < frame.children.length && ahead < PREFETCH_FOLDERS && prefetched.size < MAX_PREFETCHED; k++) {
      const child = frame.children[k];
      if (child.stat.type !== 'directory' || child.error) continue;
      ahead++;
      const path = `${frame.path}/${child.name}`;
      if (!prefetched.has(path)) prefetched.set(path, listFolder(fs, path, limits));
    }
  };
  try {
    const entered = new Set<number>();
    const root = await listing('');
    if (!root) return;
    try {
      const st = await fs.stat('/');
      if (st.inode) entered.add(st.inode);
    } catch {
      // the root listed but has no stat: loops are still bounded by maxDepth
    }
    const stack: Frame[] = [{ path: '', children: root, next: 0 }];
    let batch: IndexEntry[] = [];
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (top.next >= top.children.length) {
        stack.pop();
        continue;
      }
      const child = top.children[top.next++];
      const path = `${top.path}/${child.name}`;
      if (child.error) warn(`${path}: ${child.error}`);
      if (budget.left === 0) {
        budget.exceeded = true;
        break;
      }
      budget.left--;
      batch.push({ volume, path, type: typeOf(child), size: finite(child.stat.size), mtimeMs: finite(child.stat.mtimeMs) });
      if (batch.length >= PAGE) {
        yield batch;
        batch = [];
      }
      if (child.stat.type !== 'directory' || child.error) continue;
      if (child.stat.inode && entered.has(child.stat.inode)) {
        warn(`${path}: folder seen before (a loop in damaged metadata); not entered again`);
        continue;
      }
      if (stack.length >= limits.maxDepth) {
        warn(`${path}: deeper than ${limits.maxDepth} folders; not entered`);
        continue;
      }
      prefetch(top, stack.length);
      const children = await listing(path);
      if (!children) continue;
      if (child.stat.inode) entered.add(child.stat.inode);
      stack.push({ path, children, next: 0 });
    }
    if (batch.length) yield batch;
  } finally {
    await Promise.allSettled(prefetched.values()); // nothing reads the disk once the walk is over
  }
}

/** A folder's entries (undefined when unreadable) and what went wrong reading it. */
interface Listing {
  entries?: DirEntry[];
  warnings: string[];
}

/** A folder's entries sorted by name (without names that cannot be part of a path); never throws. */
async function listFolder(fs: FileSystem, path: string, limits: WalkLimits): Promise<Listing> {
  const warnings: string[] = [];
  const warn = (text: string) => void warnings.push(text);
  const entries: DirEntry[] = [];
  let offset: number | null = 0;
  try {
    while (offset !== null) {
      const page = await fs.readdir(path || '/', { offset, limit: FOLDER_PAGE });
      for (const e of page.entries) {
        if (e.name && e.name !== '.' && e.name !== '..' && !e.name.includes('/') && !e.name.includes('\0')) entries.push(e);
      }
      if (entries.length >= limits.maxFolderEntries) {
        warn(`${path || '/'}: more than ${limits.maxFolderEntries} entries; the rest not indexed`);
        entries.length = limits.maxFolderEntries;
        break;
      }
      if (page.nextOffset !== null && page.nextOffset <= offset) break;
      offset = page.nextOffset;
    }
  } catch (err) {
    warn(`${path || '/'}: folder unreadable: ${message(err)}`);
    return { entries: entries.length ? entries.sort(byName) : undefined, warnings };
  }
  return { entries: entries.sort(byName), warnings };
}
