/** Opened files (Disk-like handles over runs of a volume) and the path-walking base every reader shares. */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { checkRange, Disk, Extent } from '@vmkeep/disk';
import { FileSystemError, PathError } from './errors';
import type { DirEntry, FileHandle, FileStat, FileSystem, FileSystemType, ReaddirOptions, ReaddirResult } from './types';

/** Largest single read a handle serves; callers stream bigger files in pieces. */
export const MAX_READ = 64 * 1024 * 1024;
const DEFAULT_PAGE = 1000;
const UNKNOWN_STAT: FileStat = { type: 'unknown', size: 0, mode: 0, uid: 0, gid: 0, mtimeMs: 0, atimeMs: 0, ctimeMs: 0, nlink: 0, inode: 0 };

/** A run of a file's bytes stored contiguously on the volume. Bytes of the file outside every run are zeros. */
export interface Run {
  fileOffset: number;
  length: number;
  diskOffset: number;
}

/** A file whose data lies in runs of the volume; holes are never read. */
export class MappedFile implements FileHandle {
  constructor(
    private readonly disk: Disk,
    private readonly source: string,
    readonly size: number,
    /** Sorted by fileOffset, non-overlapping. */
    private readonly runs: Run[],
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source, offset, length);
    if (length > MAX_READ) throw new FileSystemError(this.source, 'file read', `read of ${length} bytes exceeds the ${MAX_READ}-byte limit`, offset);
    const out = Buffer.alloc(length);
    const end = offset + length;
    let lo = 0;
    let hi = this.runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const r = this.runs[mid];
      if (r.fileOffset + r.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.runs.length && this.runs[i].fileOffset < end; i++) {
      const r = this.runs[i];
      const from = Math.max(offset, r.fileOffset);
      const to = Math.min(end, r.fileOffset + r.length);
      if (to <= from) continue;
      const bytes = await this.disk.read(r.diskOffset + (from - r.fileOffset), to - from);
      bytes.copy(out, from - offset);
    }
    return out;
  }

  async extents(): Promise<Extent[]> {
    const out: Extent[] = [];
    for (const r of this.runs) {
      const length = Math.min(r.length, this.size - r.fileOffset);
      if (length <= 0) break;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === r.fileOffset) last.length += length;
      else out.push({ offset: r.fileOffset, length });
    }
    return out;
  }
}

/** A small file held in memory (ext inline data). */
export class BufferFile implements FileHandle {
  constructor(
    private readonly data: Buffer,
    private readonly source: string,
  ) {}
  get size(): number {
    return this.data.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source, offset, length);
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async extents(): Promise<Extent[]> {
    return this.data.length ? [{ offset: 0, length: this.data.length }] : [];
  }
}

/** Splits an absolute path into its names. "." parts are dropped; ".." and NUL are refused. */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string' || path.includes('\0')) throw new PathError('EINVAL', String(path), 'invalid path');
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new PathError('EINVAL', path, '".." is not allowed');
  return parts;
}

/** A directory entry yielded while iterating; `load` reads the entry's node only when asked. */
export interface RawEntry<N> {
  name: string;
  load(): Promise<N>;
  /** The entry's stat when the reader already holds it (preloaded metadata); `load` is then not called. */
  stat?: () => FileStat | undefined;
}

/** Path resolution, paging and the FileSystem methods, over a reader's node operations. */
export abstract class TreeFileSystem<N> implements FileSystem {
  abstract readonly type: FileSystemType;
  abstract readonly label: string;
  abstract readonly uuid: string;
  abstract readonly size: number;
  abstract readonly dirty: boolean;
  abstract readonly warnings: string[];

  protected abstract root(): Promise<N>;
  protected abstract statOf(node: N): FileStat;
  /** Entries of a directory node, without "." and "..". */
  protected abstract entries(dir: N): AsyncIterable<RawEntry<N>>;
  /**
   * `entries` in batches: listings iterate these, one promise per batch instead of one per entry. Readers that
   * parse a folder a block at a time override it; by default every entry is a batch of its own.
   */
  protected async *entryBatches(dir: N): AsyncIterable<readonly RawEntry<N>[]> {
    for await (const entry of this.entries(dir)) yield [entry];
  }
  protected abstract lookup(dir: N, name: string): Promise<N | undefined>;
  protected abstract readlinkOf(node: N, path: string): Promise<string>;
  protected abstract openNode(node: N, path: string): Promise<FileHandle>;

  protected async resolve(path: string): Promise<N> {
    let node = await this.root();
    const parts = splitPath(path);
    for (let i = 0; i < parts.length; i++) {
      if (this.statOf(node).type !== 'directory') throw new PathError('ENOTDIR', '/' + parts.slice(0, i).join('/'), 'not a directory');
      const next = await this.lookup(node, parts[i]);
      if (next === undefined) throw new PathError('ENOENT', '/' + parts.slice(0, i + 1).join('/'), 'no such file or directory');
      node = next;
    }
    return node;
  }

  async readdir(path: string, options: ReaddirOptions = {}): Promise<ReaddirResult> {
    const offset = options.offset ?? 0;
    const limit = options.limit ?? DEFAULT_PAGE;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(limit) || limit < 1) {
      throw new PathError('EINVAL', path, `invalid page (offset ${offset}, limit ${limit})`);
    }
    const dir = await this.resolve(path);
    if (this.statOf(dir).type !== 'directory') throw new PathError('ENOTDIR', path, 'not a directory');
    const entries: DirEntry[] = [];
    let index = 0;
    for await (const batch of this.entryBatches(dir)) {
      for (const raw of batch) {
        // Cached metadata resolves without I/O: give timers and sockets a turn now and then in a huge folder.
        if ((index & 4095) === 4095) await yieldToEventLoop();
        if (index++ < offset) continue;
        if (entries.length === limit) return { entries, nextOffset: offset + limit };
        try {
          entries.push({ name: raw.name, stat: raw.stat?.() ?? this.statOf(await raw.load()) });
        } catch (e) {
          // One damaged inode does not hide the rest of the folder: it is listed with its error.
          if (!(e instanceof FileSystemError)) throw e;
          entries.push({ name: raw.name, stat: { ...UNKNOWN_STAT }, error: e.message });
        }
      }
    }
    return { entries, nextOffset: null };
  }

  async readdirNames(path: string, limit = 1_000_000): Promise<{ names: string[]; complete: boolean }> {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new PathError('EINVAL', path, `invalid limit ${limit}`);
    const dir = await this.resolve(path);
    if (this.statOf(dir).type !== 'directory') throw new PathError('ENOTDIR', path, 'not a directory');
    const names: string[] = [];
    for await (const batch of this.entryBatches(dir)) {
      for (const raw of batch) {
        if (names.length === limit) return { names, complete: false };
        names.push(raw.name);
        if ((names.length & 4095) === 0) await yieldToEventLoop();
      }
    }
    return { names, complete: true };
  }

  async stat(path: string): Promise<FileStat> {
    return this.statOf(await this.resolve(path));
  }

  async readlink(path: string): Promise<string> {
    const node = await this.resolve(path);
    if (this.statOf(node).type !== 'symlink') throw new PathError('EINVAL', path, 'not a symbolic link');
    return this.readlinkOf(node, path);
  }

  async open(path: string): Promise<FileHandle> {
    const node = await this.resolve(path);
    const type = this.statOf(node).type;
    if (type === 'directory') throw new PathError('EISDIR', path, 'is a directory');
    if (type !== 'file') throw new PathError('EINVAL', path, `not a regular file (${type})`);
    return this.openNode(node, path);
  }
}

/** A bounded least-recently-used cache of fixed-size blocks of a disk. */
export class BlockCache {
  private readonly blocks = new Map<number, Buffer>();
  constructor(
    private readonly disk: Disk,
    private readonly blockSize: number,
    private readonly capacity = 256,
  ) {}

  async get(block: number, source: string, structure: string): Promise<Buffer> {
    const hit = this.blocks.get(block);
    if (hit) {
      this.blocks.delete(block);
      this.blocks.set(block, hit);
      return hit;
    }
    const offset = block * this.blockSize;
    if (!Number.isSafeInteger(offset) || block < 0 || offset + this.blockSize > this.disk.size) {
      throw new FileSystemError(source, structure, `block ${block} lies outside the volume`, Number.isSafeInteger(offset) ? offset : undefined);
    }
    const data = await this.disk.read(offset, this.blockSize);
    if (this.blocks.size >= this.capacity) this.blocks.delete(this.blocks.keys().next().value as number);
    this.blocks.set(block, data);
    return data;
  }
}

/**
 * Name → id maps of the most recently searched directories, so that opening many files of one large directory
 * scans it once. At most `budget` names are held across all cached directories (older directories are dropped
 * first); a directory with more names than that is scanned on each lookup instead.
 */
export class DirectoryIndex<V> {
  private readonly dirs = new Map<number, Map<string, V>>();
  private held = 0;
  constructor(private readonly budget = 300_000) {}

  async lookup(dirKey: number, name: string, scan: () => AsyncIterable<[string, V]>): Promise<V | undefined> {
    const cached = this.dirs.get(dirKey);
    if (cached) return cached.get(name);
    let index: Map<string, V> | undefined = new Map<string, V>();
    let found: V | undefined;
    for await (const [key, value] of scan()) {
      if (found === undefined && key === name) found = value;
      if (!index || index.has(key)) continue;
      index.set(key, value);
      if (index.size > this.budget) index = undefined;
    }
    if (index) {
      for (const [key, old] of this.dirs) {
        if (this.held + index.size <= this.budget) break;
        this.dirs.delete(key);
        this.held -= old.size;
      }
      this.dirs.set(dirKey, index);
      this.held += index.size;
    }
    return found;
  }
}
