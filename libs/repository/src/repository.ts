/**
 * A local repository: config, chunk store, restore points (fixed indexes + manifest). Layout in ../FORMAT.md.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Disk } from '@vmkeep/disk';
import { fsyncDir, writeFileAtomic } from './atomic';
import { ChunkCodec, sharedChunkWorkers } from './chunk-workers';
import { FsChunkStore } from './chunk-store';
import { ChunkIdScheme, decodeBlob } from './codec';
import { CHUNKS_DIR, CONFIG_FILE, INDEX_EXT, MANIFEST_FILE, MAX_DISK_SIZE, POINTS_DIR } from './constants';
import {
  IndexFormatError,
  PointDiskNotFoundError,
  PointNotFoundError,
  PointStateError,
  RepositoryError,
  RepositoryNotEmptyError,
  RepositoryNotFoundError,
} from './errors';
import { FixedIndexWriter, readFixedIndex } from './fixed-index';
import { parseManifest, serializeManifest } from './manifest';
import { assertDiskKey, isPointId, newPointId } from './names';
import { PointDisk } from './point-disk';
import { InitOptions, RepositoryConfig, newConfig, parseConfig } from './repo-config';
import type { DiskWriteStats, Manifest, ManifestDisk, WriteProgress } from './types';
import { writeDiskChunks } from './write-disk';

/** How this process works with the repository (not stored in it). */
export interface RuntimeOptions {
  /** Where hashing/compression runs; default: the process-wide worker-thread pool. */
  codec?: ChunkCodec;
  /** Chunks in flight per disk being written; default 4. */
  concurrency?: number;
}

export interface WriteDiskOptions {
  meta?: Record<string, unknown>;
  onProgress?: (p: WriteProgress) => void;
  signal?: AbortSignal;
}

const DEFAULT_CONCURRENCY = 4;

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

function checkMeta(meta: unknown, what: string): Record<string, unknown> {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    throw new RepositoryError(`${what} must be a plain object`, 'INVALID_META');
  }
  try {
    return JSON.parse(JSON.stringify(meta)) as Record<string, unknown>;
  } catch (err) {
    throw new RepositoryError(`${what} is not JSON-serializable: ${(err as Error).message}`, 'INVALID_META');
  }
}

export class Repository {
  readonly chunkSize: number;
  readonly compressionLevel: number;
  /** The chunk store (exposed for verify/GC tooling and tests). */
  readonly store: FsChunkStore;
  private readonly scheme: ChunkIdScheme = { algorithm: 'sha256' };
  private readonly codec: ChunkCodec;
  private readonly concurrency: number;

  private constructor(
    readonly dir: string,
    readonly config: RepositoryConfig,
    runtime: RuntimeOptions,
  ) {
    this.chunkSize = config.chunkSize;
    this.compressionLevel = config.compression.level;
    this.store = new FsChunkStore(path.join(dir, CHUNKS_DIR));
    this.codec = runtime.codec ?? sharedChunkWorkers();
    this.concurrency = runtime.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RepositoryError(`concurrency must be a positive integer, got ${this.concurrency}`, 'INVALID_OPTION');
    }
  }

  /** Creates a repository in `dir` (created if missing). Refuses a folder that holds anything. */
  static async init(dir: string, opts: InitOptions = {}, runtime: RuntimeOptions = {}): Promise<Repository> {
    const root = path.resolve(dir);
    const config = newConfig(opts);
    await fs.mkdir(root, { recursive: true });
    if ((await fs.readdir(root)).length > 0) throw new RepositoryNotEmptyError(root);
    await fs.mkdir(path.join(root, CHUNKS_DIR));
    await fs.mkdir(path.join(root, POINTS_DIR));
    await fsyncDir(root);
    // The config goes last: a folder without it is not a repository, whatever else is there.
    await writeFileAtomic(path.join(root, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
    return new Repository(root, config, runtime);
  }

  /** Opens an existing repository; refuses a missing config and formats newer than this code. */
  static async open(dir: string, runtime: RuntimeOptions = {}): Promise<Repository> {
    const root = path.resolve(dir);
    const file = path.join(root, CONFIG_FILE);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) throw new RepositoryNotFoundError(root);
      throw err;
    }
    return new Repository(root, parseConfig(text, `repository config ${file}`), runtime);
  }

  /** Opens the repository in `dir`, or creates one there if the folder is missing or empty. */
  static async openOrInit(dir: string, opts: InitOptions = {}, runtime: RuntimeOptions = {}): Promise<Repository> {
    try {
      return await Repository.open(dir, runtime);
    } catch (err) {
      if (!(err instanceof RepositoryNotFoundError)) throw err;
    }
    return Repository.init(dir, opts, runtime);
  }

  /** Starts a new restore point; it stays invisible until commit(). */
  beginPoint(): PointWriter {
    return new PointWriter(this);
  }

  /** Committed restore points (those with a manifest), oldest first. */
  async listPoints(): Promise<Manifest[]> {
    const names = (await fs.readdir(this.pointsDir())).filter(isPointId).sort();
    const manifests: Manifest[] = [];
    for (const name of names) {
      const manifest = await this.tryReadManifest(name);
      if (manifest) manifests.push(manifest);
    }
    return manifests;
  }

  async readManifest(pointId: string): Promise<Manifest> {
    const manifest = isPointId(pointId) ? await this.tryReadManifest(pointId) : undefined;
    if (!manifest) throw new PointNotFoundError(String(pointId));
    return manifest;
  }

  /** A disk of a committed point as a Disk (reads verify every chunk; missing/corrupt chunks throw). */
  async openDisk(pointId: string, diskKey: string): Promise<PointDisk> {
    assertDiskKey(diskKey);
    const manifest = await this.readManifest(pointId);
    const disk = manifest.disks.find((d) => d.key === diskKey);
    if (!disk) throw new PointDiskNotFoundError(pointId, diskKey);
    const name = `${pointId}/${diskKey}`;
    const index = await readFixedIndex(this.indexPath(pointId, diskKey), name);
    if (index.diskSize !== disk.size || index.chunkSize !== disk.chunkSize) {
      throw new IndexFormatError(name, 'disk size or chunk size differs from the manifest');
    }
    return new PointDisk(index, (id) => this.loadChunk(id), pointId, diskKey);
  }

  /** A chunk's verified plaintext. */
  async loadChunk(id: Buffer): Promise<Buffer> {
    return decodeBlob(id, await this.store.get(id), this.scheme);
  }

  /** @internal used by PointWriter */
  pointsDir(): string {
    return path.join(this.dir, POINTS_DIR);
  }

  /** @internal */
  pointDir(pointId: string): string {
    return path.join(this.pointsDir(), pointId);
  }

  /** @internal */
  indexPath(pointId: string, diskKey: string): string {
    return path.join(this.pointDir(pointId), diskKey + INDEX_EXT);
  }

  /** @internal */
  async writeDiskData(
    pointId: string,
    key: string,
    source: Disk,
    opts: WriteDiskOptions,
  ): Promise<DiskWriteStats> {
    const size = source.size;
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_DISK_SIZE) {
      throw new RepositoryError(`disk ${key}: unsupported size ${size}`, 'INVALID_DISK_SIZE');
    }
    const dir = this.pointDir(pointId);
    await fs.mkdir(dir, { recursive: true });
    const index = await FixedIndexWriter.create(this.indexPath(pointId, key), size, this.chunkSize);
    try {
      const deps = {
        store: this.store,
        codec: this.codec,
        scheme: this.scheme,
        chunkSize: this.chunkSize,
        compressionLevel: this.compressionLevel,
        concurrency: this.concurrency,
      };
      const stats = await writeDiskChunks(deps, source, index, { diskKey: key, ...opts });
      await index.finish();
      return stats;
    } catch (err) {
      await index.abort();
      throw err;
    }
  }

  private async tryReadManifest(pointId: string): Promise<Manifest | undefined> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.pointDir(pointId), MANIFEST_FILE), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
      throw err;
    }
    return parseManifest(text, pointId);
  }
}

/** Writes one restore point: disks first, manifest last. */
export class PointWriter {
  readonly id: string;
  readonly createdAt: Date;
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  private readonly writing = new Set<string>();
  private readonly disks: ManifestDisk[] = [];

  constructor(private readonly repo: Repository) {
    const { id, createdAt } = newPointId();
    this.id = id;
    this.createdAt = createdAt;
  }

  /** Stores `source` as disk `key` of this point. Disks of one point may be written concurrently. */
  async writeDisk(key: string, source: Disk, opts: WriteDiskOptions = {}): Promise<DiskWriteStats> {
    assertDiskKey(key);
    this.assertOpen('write a disk');
    if (this.writing.has(key) || this.disks.some((d) => d.key === key)) {
      throw new PointStateError(`point ${this.id} already has a disk ${key}`);
    }
    const meta = checkMeta(opts.meta ?? {}, `meta of disk ${key}`);
    this.writing.add(key);
    try {
      const stats = await this.repo.writeDiskData(this.id, key, source, opts);
      this.disks.push({ key, size: stats.size, chunkSize: this.repo.chunkSize, chunks: stats.chunks, meta });
      return stats;
    } finally {
      this.writing.delete(key);
    }
  }

  /** Makes the point visible: writes its manifest atomically, after every index is durable. */
  async commit(meta: Record<string, unknown>): Promise<Manifest> {
    this.assertOpen('commit');
    if (this.writing.size) throw new PointStateError(`point ${this.id}: cannot commit while disks are being written`);
    const manifest: Manifest = {
      format: 1,
      id: this.id,
      createdAt: this.createdAt.toISOString(),
      meta: checkMeta(meta, 'point meta'),
      disks: [...this.disks].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    };
    const dir = this.repo.pointDir(this.id);
    await fs.mkdir(dir, { recursive: true });
    await fsyncDir(this.repo.pointsDir());
    this.state = 'committing';
    try {
      await writeFileAtomic(path.join(dir, MANIFEST_FILE), serializeManifest(manifest));
    } catch (err) {
      this.state = 'open';
      throw err;
    }
    this.state = 'committed';
    return manifest;
  }

  /** Drops an uncommitted point: removes its index files. Its chunks stay (garbage collection's job). */
  async abort(): Promise<void> {
    if (this.state === 'committed' || this.state === 'committing') throw new PointStateError(`point ${this.id} is committed and cannot be aborted`);
    if (this.writing.size) throw new PointStateError(`point ${this.id}: stop its disk writes (AbortSignal) before abort()`);
    this.state = 'aborted';
    await fs.rm(this.repo.pointDir(this.id), { recursive: true, force: true });
  }

  private assertOpen(action: string): void {
    if (this.state !== 'open') throw new PointStateError(`cannot ${action}: point ${this.id} is ${this.state}`);
  }
}
