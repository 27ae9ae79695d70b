/**
 * A local repository: config, chunk store, restore points (fixed indexes + manifest). Layout in ../FORMAT.md.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Disk, Extent } from '@vmkeep/disk';
import { ArchiveChange, ArchiveRecords, ArchiveStatus } from './archive';
import { fsyncDir, writeFileAtomic } from './atomic';
import { BadChunkList, BadChunkRecord } from './bad-chunks';
import { ChunkCodec, sharedChunkWorkers } from './chunk-workers';
import { FsChunkStore } from './chunk-store';
import { ChunkIdScheme, decodeBlob } from './codec';
import {
  ARCHIVES_DIR,
  BAD_CHUNKS_DIR,
  CHUNKS_DIR,
  CONFIG_FILE,
  INDEX_EXT,
  LOCKS_DIR,
  KEY_FILE,
  MANIFEST_DELETING_FILE,
  MANIFEST_FILE,
  MAX_DISK_SIZE,
  POINTS_DIR,
  WRITERS_DIR,
} from './constants';
import { KdfStrength, RepositoryKeys, kdfParams, parseKeyFile, unwrapKeys, wrapKeys } from './crypto';
import {
  ArchiveLockedError,
  IndexFormatError,
  PassphraseRequiredError,
  PointDiskNotFoundError,
  PointNotFoundError,
  PointStateError,
  RepositoryError,
  RepositoryNotEmptyError,
  RepositoryFormatError,
  RepositoryNotFoundError,
  StaleWriterError,
} from './errors';
import { FixedIndex, FixedIndexWriter, readFixedIndex } from './fixed-index';
import { RepositoryDescription, describeRepository } from './describe';
import { GcOptions, GcReport, collectGarbage } from './gc';
import { ExclusiveLock, HeldLock, LockOptions, StaleLock, withExclusiveLock } from './locks';
import { parseManifest, serializeManifest } from './manifest';
import { assertDiskKey, isPointId, newPointId } from './names';
import { PointDisk } from './point-disk';
import { InitOptions, RepositoryConfig, newConfig, parseConfig } from './repo-config';
import { PrunePlan, RetentionPolicy, planPrune } from './retention';
import type { DiskWriteStats, Manifest, ManifestDisk, WriteProgress } from './types';
import { VerifyOptions, VerifyReport, verifyRepository } from './verify';
import { writeDiskChunks } from './write-disk';
import { ActiveWriterMarker, WriterMarkers } from './writers';

/** How this process works with the repository (not stored in it). */
export interface RuntimeOptions {
  /** Where hashing/compression runs; default: the process-wide worker-thread pool. */
  codec?: ChunkCodec;
  /** Chunks in flight per disk being written; default 4. */
  concurrency?: number;
  /** Passphrase of an encrypted repository (required to open or create one; never stored or logged). */
  passphrase?: string;
  /** An exclusive lock (GC, prune, passphrase change) not refreshed for this long is stale; default 5 min. */
  lockStaleMs?: number;
  /** Told about every stale lock this process takes over (exclusive lock, dead writers' markers). */
  onStaleLock?: (stale: StaleLock) => void;
}

export interface PruneOptions {
  /** List what would go, delete nothing. */
  dryRun?: boolean;
  /** The time the policy is evaluated at; default now. */
  now?: Date;
}

export interface PruneResult {
  plan: PrunePlan;
  dryRun: boolean;
  /** Points actually deleted (empty in a dry run). */
  removed: string[];
  /** Points the plan removes that were left alone (e.g. archived meanwhile), with the reason. */
  skipped: { id: string; reason: string }[];
  /** The stale exclusive lock this prune took over, if any. */
  staleLocks: StaleLock[];
}

/** State of a folder under points/ (see FORMAT.md). */
export interface PointFolder {
  id: string;
  state: 'committed' | 'deleting' | 'partial';
  mtimeMs: number;
}

export interface WriteDiskOptions {
  meta?: Record<string, unknown>;
  /**
   * Incremental write: a disk of a committed point of this repository holding the same disk as it was, and
   * the areas that changed since. Only chunks touching `changed` are read; the others keep the parent's chunk
   * ids. The parent must have the same size (RepositoryError PARENT_MISMATCH); a parent chunk missing from the
   * store is PARENT_UNREADABLE, a missing point or disk PointNotFoundError / PointDiskNotFoundError.
   */
  parent?: { pointId: string; diskKey: string; changed: Extent[] };
  onProgress?: (p: WriteProgress) => void;
  signal?: AbortSignal;
}

const DEFAULT_CONCURRENCY = 4;
/** How long archivePoint waits for a concurrent delete to decide about the point. */
const ARCHIVE_DELETE_WAIT_MS = 10_000;
const ARCHIVE_DELETE_POLL_MS = 50;

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
  /** Chunks verify found bad (re-uploaded by the next backup). */
  readonly badChunks: BadChunkList;
  /** Archive records (write-once revisions). */
  readonly archives: ArchiveRecords;
  /** In-progress markers of running writers (their shared locks). */
  readonly writers: WriterMarkers;
  /** The exclusive lock of GC, prune and passphrase change (FORMAT.md, "Locks"). */
  readonly lock: ExclusiveLock;
  private readonly scheme: ChunkIdScheme;
  private readonly codec: ChunkCodec;
  private readonly concurrency: number;
  private readonly lockOptions: LockOptions;
  readonly #keys?: RepositoryKeys;

  private constructor(
    readonly dir: string,
    readonly config: RepositoryConfig,
    runtime: RuntimeOptions,
    keys?: RepositoryKeys,
  ) {
    this.chunkSize = config.chunkSize;
    this.compressionLevel = config.compression.level;
    this.#keys = keys;
    this.scheme = keys ? { algorithm: 'hmac-sha256', key: keys.idKey } : { algorithm: 'sha256' };
    this.store = new FsChunkStore(path.join(dir, CHUNKS_DIR));
    this.badChunks = new BadChunkList(path.join(dir, BAD_CHUNKS_DIR));
    this.archives = new ArchiveRecords(path.join(dir, ARCHIVES_DIR));
    this.writers = new WriterMarkers(path.join(dir, WRITERS_DIR));
    this.lock = new ExclusiveLock(path.join(dir, LOCKS_DIR));
    this.lockOptions = { staleMs: runtime.lockStaleMs, onStale: runtime.onStaleLock };
    this.codec = runtime.codec ?? sharedChunkWorkers();
    this.concurrency = runtime.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RepositoryError(`concurrency must be a positive integer, got ${this.concurrency}`, 'INVALID_OPTION');
    }
  }

  /**
   * Creates a repository in `dir` (created if missing). Refuses a folder that holds anything. With
   * `opts.encrypt`, `runtime.passphrase` wraps the new random master keys.
   */
  static async init(dir: string, opts: InitOptions = {}, runtime: RuntimeOptions = {}): Promise<Repository> {
    const root = path.resolve(dir);
    const config = newConfig(opts);
    let keys: RepositoryKeys | undefined;
    let keyFile: string | undefined;
    if (config.encryption) {
      if (runtime.passphrase === undefined) throw new PassphraseRequiredError();
      keys = RepositoryKeys.generate();
      keyFile = JSON.stringify(await wrapKeys(keys, runtime.passphrase, config.id, kdfParams(opts.kdf)), null, 2) + '\n';
    }
    await fs.mkdir(root, { recursive: true });
    if ((await fs.readdir(root)).length > 0) throw new RepositoryNotEmptyError(root);
    await fs.mkdir(path.join(root, CHUNKS_DIR));
    await fs.mkdir(path.join(root, POINTS_DIR));
    await fsyncDir(root);
    if (keyFile) await writeFileAtomic(path.join(root, KEY_FILE), keyFile);
    // The config goes last: a folder without it is not a repository, whatever else is there.
    await writeFileAtomic(path.join(root, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
    return new Repository(root, config, runtime, keys);
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
    const config = parseConfig(text, `repository config ${file}`);
    if (!config.encryption) return new Repository(root, config, runtime);
    if (runtime.passphrase === undefined) throw new PassphraseRequiredError();
    const keys = await unwrapKeys(await Repository.readKeyFile(root), runtime.passphrase, config.id);
    return new Repository(root, config, runtime, keys);
  }

  private static async readKeyFile(root: string) {
    const file = path.join(root, KEY_FILE);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new RepositoryFormatError(`repository ${root}`, 'encrypted, but its key file is missing');
      throw err;
    }
    return parseKeyFile(text, `key file ${file}`);
  }

  /** Whether chunks, indexes and manifests are encrypted. */
  get encrypted(): boolean {
    return this.#keys !== undefined;
  }

  /**
   * Changes the passphrase of an encrypted repository: re-wraps the same master keys and replaces only the key
   * file, atomically. `current` must unlock the existing key file.
   */
  async changePassphrase(current: string, next: string, opts: { kdf?: KdfStrength } = {}): Promise<void> {
    if (!this.#keys) throw new RepositoryError('this repository is not encrypted: it has no passphrase', 'NOT_ENCRYPTED');
    await this.exclusively('passphrase', [], () => this.rewrapKeys(current, next, opts.kdf));
  }

  private async rewrapKeys(current: string, next: string, kdf?: KdfStrength): Promise<void> {
    if (!this.#keys) return;
    const existing = await unwrapKeys(await Repository.readKeyFile(this.dir), current, this.config.id);
    if (!existing.equals(this.#keys)) {
      throw new RepositoryError('the key file no longer holds the keys this repository was opened with', 'KEY_MISMATCH');
    }
    const file = await wrapKeys(this.#keys, next, this.config.id, kdfParams(kdf));
    await writeFileAtomic(path.join(this.dir, KEY_FILE), JSON.stringify(file, null, 2) + '\n');
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

  /** The manifest entry of a disk of a committed point (PointNotFoundError / PointDiskNotFoundError). */
  async manifestDisk(pointId: string, diskKey: string): Promise<ManifestDisk> {
    assertDiskKey(diskKey);
    const disk = (await this.readManifest(pointId)).disks.find((d) => d.key === diskKey);
    if (!disk) throw new PointDiskNotFoundError(pointId, diskKey);
    return disk;
  }

  /** A disk of a committed point as a Disk (reads verify every chunk; missing/corrupt chunks throw). */
  async openDisk(pointId: string, diskKey: string): Promise<PointDisk> {
    assertDiskKey(diskKey);
    const manifest = await this.readManifest(pointId);
    const disk = manifest.disks.find((d) => d.key === diskKey);
    if (!disk) throw new PointDiskNotFoundError(pointId, diskKey);
    const index = await this.readIndex(pointId, disk);
    return new PointDisk(index, (id) => this.loadChunk(id), pointId, diskKey);
  }

  /** The checked (and, encrypted, authenticated) index of a disk of a point, matched against its manifest entry. */
  async readIndex(pointId: string, disk: ManifestDisk): Promise<FixedIndex> {
    assertDiskKey(disk.key);
    const name = `${pointId}/${disk.key}`;
    const index = await readFixedIndex(this.indexPath(pointId, disk.key), name, this.#keys?.encKey);
    if (index.diskSize !== disk.size || index.chunkSize !== disk.chunkSize) {
      throw new IndexFormatError(name, 'disk size or chunk size differs from the manifest');
    }
    return index;
  }

  /** A chunk's verified plaintext. */
  async loadChunk(id: Buffer): Promise<Buffer> {
    return this.decodeChunk(id, await this.store.get(id));
  }

  /** @internal the id this repository gives a chunk of plaintext `data` (keyed when encrypted). */
  async chunkIdOf(data: Buffer): Promise<Buffer> {
    return (await this.codec.hash(this.scheme, data)).id;
  }

  /** @internal whether chunk ids of this repository and `other` are computed the same way (plain SHA-256 in both). */
  sharesChunkIdsWith(other: Repository): boolean {
    return this.scheme.algorithm === 'sha256' && other.scheme.algorithm === 'sha256';
  }

  /** @internal stores plaintext `data` under `id` (encoded and, encrypted, sealed); returns the stored bytes. */
  async storeChunk(id: Buffer, data: Buffer): Promise<number> {
    const encKey = this.#keys?.encKey;
    const blob = await this.codec.encode(data, this.compressionLevel, encKey ? { key: encKey, id } : undefined);
    const knownBad = (await this.badChunks.ids()).has(id.toString('hex'));
    await this.store.insert(id, blob, { overwrite: knownBad });
    if (knownBad) await this.badChunks.remove(id.toString('hex'));
    return blob.length;
  }

  /** @internal starts writing a disk index of a point, sealed with this repository's key when encrypted. */
  createIndexWriter(pointId: string, diskKey: string, diskSize: number): Promise<FixedIndexWriter> {
    assertDiskKey(diskKey);
    const encKey = this.#keys?.encKey;
    const sealing = encKey && { key: encKey, name: `${pointId}/${diskKey}` };
    return FixedIndexWriter.create(this.indexPath(pointId, diskKey), diskSize, this.chunkSize, sealing);
  }

  /** @internal a writer for a point with a given id and time (a copy keeps the source's); invisible until commit. */
  continuePoint(pointId: string, createdAt: Date): PointWriter {
    if (!isPointId(pointId)) throw new PointNotFoundError(String(pointId));
    return new PointWriter(this, { id: pointId, createdAt });
  }

  /** Whether a committed point with this id exists. */
  async hasPoint(pointId: string): Promise<boolean> {
    return isPointId(pointId) && (await this.tryReadManifest(pointId)) !== undefined;
  }

  /** Checks a stored blob (CRC, authentication, decompression, id) and returns the plaintext. */
  decodeChunk(id: Buffer, blob: Buffer): Buffer {
    return decodeBlob(id, blob, this.scheme, this.#keys?.encKey);
  }

  /** Checks every chunk of the selected points (default: all); see VerifyReport. */
  verify(opts: VerifyOptions = {}): Promise<VerifyReport> {
    return verifyRepository(this, opts);
  }

  /** Chunks verify found bad and no backup has stored again yet. */
  listBadChunks(): Promise<BadChunkRecord[]> {
    return this.badChunks.list();
  }

  /**
   * Mark and sweep; safe while writers run (FORMAT.md, garbage collection). Holds the exclusive lock unless it is
   * a dry run (RepositoryLockedError while another GC, prune or passphrase change runs).
   */
  collectGarbage(opts: GcOptions = {}): Promise<GcReport> {
    if (opts.dryRun) return collectGarbage(this, opts);
    const staleLocks: StaleLock[] = [];
    return this.exclusively('gc', staleLocks, (held) =>
      collectGarbage(this, opts, { staleLocks, beforeSweep: () => held.assertHeld(), onStale: this.lockOptions.onStale }),
    );
  }

  /** What the repository holds (config, every committed point with VM name, time, disks, sizes, archive state). */
  describe(opts: { storage?: boolean } = {}): Promise<RepositoryDescription> {
    return describeRepository(this, opts);
  }

  /** Runs `fn` under the exclusive lock; stale locks taken over go to `staleLocks` and the runtime's onStaleLock. */
  private exclusively<T>(operation: string, staleLocks: StaleLock[], fn: (held: HeldLock) => Promise<T>): Promise<T> {
    const onStale = (stale: StaleLock) => {
      staleLocks.push(stale);
      this.lockOptions.onStale?.(stale);
    };
    return withExclusiveLock(this.lock, operation, { staleMs: this.lockOptions.staleMs, onStale }, fn);
  }

  /**
   * Applies a retention policy to the points that are not archived. Archived points are never removed by
   * prune (they are kept with the reason). Deletes manifests and index files only; chunks go with the next GC.
   */
  async prune(policy: RetentionPolicy, opts: PruneOptions = {}): Promise<PruneResult> {
    if (opts.dryRun) return this.pruneUnlocked(policy, opts, []);
    const staleLocks: StaleLock[] = [];
    return this.exclusively('prune', staleLocks, () => this.pruneUnlocked(policy, opts, staleLocks));
  }

  private async pruneUnlocked(policy: RetentionPolicy, opts: PruneOptions, staleLocks: StaleLock[]): Promise<PruneResult> {
    const now = opts.now ?? new Date();
    const manifests = await this.listPoints();
    const archives = new Map((await this.archives.list(now)).map((a) => [a.pointId, a]));
    const plan = planPrune(
      manifests.map((m) => {
        const a = archives.get(m.id);
        const protectedReason = a && `archived until ${a.retainUntil}${a.legalHold ? ', legal hold' : ''}`;
        return { id: m.id, createdAt: m.createdAt, protectedReason };
      }),
      policy,
      now,
    );
    const result: PruneResult = { plan, dryRun: !!opts.dryRun, removed: [], skipped: [], staleLocks };
    if (opts.dryRun) return result;
    for (const { id } of plan.remove) {
      try {
        await this.deletePoint(id);
        result.removed.push(id);
      } catch (err) {
        if (!(err instanceof ArchiveLockedError || err instanceof PointNotFoundError)) throw err;
        result.skipped.push({ id, reason: err.message });
      }
    }
    return result;
  }

  /**
   * Deletes a committed point's manifest and index files (its chunks go with the next GC). An archived point
   * that is locked throws ArchiveLockedError; an expired, unheld archive can be deleted. Safe against a
   * concurrent archivePoint(): the manifest is first renamed aside, the archive record checked again, and the
   * manifest put back if the point was archived meanwhile.
   */
  async deletePoint(pointId: string): Promise<void> {
    if (!isPointId(pointId)) throw new PointNotFoundError(String(pointId));
    await this.assertNotLocked(pointId);
    const dir = this.pointDir(pointId);
    const manifest = path.join(dir, MANIFEST_FILE);
    const deleting = path.join(dir, MANIFEST_DELETING_FILE);
    try {
      await fs.rename(manifest, deleting);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) throw new PointNotFoundError(pointId);
      throw err;
    }
    try {
      await this.assertNotLocked(pointId);
    } catch (err) {
      await fs.rename(deleting, manifest);
      throw err;
    }
    await this.finishDelete(pointId);
  }

  /** @internal completes a delete past its decision point: manifest first, then the indexes and the folder. */
  async finishDelete(pointId: string): Promise<void> {
    const dir = this.pointDir(pointId);
    await fs.rm(path.join(dir, MANIFEST_DELETING_FILE), { force: true });
    await fsyncDir(dir).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
    await fsyncDir(this.pointsDir());
  }

  /** @internal undoes a delete that was interrupted before its decision (the point was archived meanwhile). */
  async restoreDeleting(pointId: string): Promise<void> {
    const dir = this.pointDir(pointId);
    await fs.link(path.join(dir, MANIFEST_DELETING_FILE), path.join(dir, MANIFEST_FILE)).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
    });
    await fs.rm(path.join(dir, MANIFEST_DELETING_FILE), { force: true });
    await fsyncDir(dir);
  }

  /**
   * Archives a committed point until `retainUntil` (optionally on legal hold), or changes its archive:
   * retain-until can only be extended, the legal hold set or released. From then on no call of this library
   * removes or alters the point, its indexes or its chunks while it is locked.
   */
  async archivePoint(pointId: string, change: ArchiveChange): Promise<ArchiveStatus> {
    await this.readManifest(pointId);
    const status = await this.archives.change(pointId, change);
    await this.waitForConcurrentDelete(pointId);
    return status;
  }

  /** Sets or releases the legal hold of an archived point. */
  async setLegalHold(pointId: string, legalHold: boolean): Promise<ArchiveStatus> {
    return this.archivePoint(pointId, { legalHold });
  }

  /** The point's archive status, undefined when it is not archived. */
  archiveStatus(pointId: string): Promise<ArchiveStatus | undefined> {
    return this.archives.status(pointId);
  }

  /** Archived points whose manifest still exists. */
  async listArchives(): Promise<ArchiveStatus[]> {
    const existing = new Set((await this.listPoints()).map((m) => m.id));
    return (await this.archives.list()).filter((a) => existing.has(a.pointId));
  }

  /** Every folder under points/, with what it holds. */
  async listPointFolders(): Promise<PointFolder[]> {
    const out: PointFolder[] = [];
    for (const id of (await fs.readdir(this.pointsDir())).filter(isPointId).sort()) {
      const dir = this.pointDir(id);
      let mtimeMs: number;
      try {
        mtimeMs = (await fs.stat(dir)).mtimeMs;
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue;
        throw err;
      }
      const has = (name: string) =>
        fs.access(path.join(dir, name)).then(
          () => true,
          () => false,
        );
      const state = (await has(MANIFEST_FILE)) ? 'committed' : (await has(MANIFEST_DELETING_FILE)) ? 'deleting' : 'partial';
      out.push({ id, state, mtimeMs });
    }
    return out;
  }

  /** @internal the manifest of a point in any state where it has one (committed or being deleted). */
  async readAnyManifest(pointId: string): Promise<Manifest | undefined> {
    return (await this.tryReadManifest(pointId)) ?? (await this.tryReadManifest(pointId, MANIFEST_DELETING_FILE));
  }

  private async assertNotLocked(pointId: string): Promise<void> {
    const status = await this.archives.status(pointId);
    if (status?.locked) throw new ArchiveLockedError(pointId, status.retainUntil, status.legalHold);
  }

  /** After an archive record is written: make sure the point was not deleted by a delete that raced with it. */
  private async waitForConcurrentDelete(pointId: string): Promise<void> {
    const dir = this.pointDir(pointId);
    const exists = (name: string) =>
      fs.access(path.join(dir, name)).then(
        () => true,
        () => false,
      );
    const deadline = Date.now() + ARCHIVE_DELETE_WAIT_MS;
    while (!(await exists(MANIFEST_FILE))) {
      if (!(await exists(MANIFEST_DELETING_FILE))) throw new PointNotFoundError(pointId);
      if (Date.now() > deadline) {
        throw new RepositoryError(`point ${pointId} is being deleted by another process; try again`, 'POINT_BUSY');
      }
      await new Promise((r) => setTimeout(r, ARCHIVE_DELETE_POLL_MS));
    }
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
    const encKey = this.#keys?.encKey;
    const sealing = encKey && { key: encKey, name: `${pointId}/${key}` };
    const index = await FixedIndexWriter.create(this.indexPath(pointId, key), size, this.chunkSize, sealing);
    try {
      const deps = {
        store: this.store,
        codec: this.codec,
        scheme: this.scheme,
        chunkSize: this.chunkSize,
        compressionLevel: this.compressionLevel,
        concurrency: this.concurrency,
        encryptionKey: encKey,
        knownBad: await this.badChunks.ids(),
        onRepaired: (hex: string) => this.badChunks.remove(hex),
      };
      const parent = opts.parent && {
        index: await this.readIndex(opts.parent.pointId, await this.manifestDisk(opts.parent.pointId, opts.parent.diskKey)),
        changed: opts.parent.changed,
        name: `point ${opts.parent.pointId} disk ${opts.parent.diskKey}`,
      };
      const stats = await writeDiskChunks(deps, source, index, { diskKey: key, onProgress: opts.onProgress, signal: opts.signal, parent });
      await index.finish();
      return stats;
    } catch (err) {
      await index.abort();
      throw err;
    }
  }

  /** @internal */
  encodeManifest(manifest: Manifest): string {
    return serializeManifest(manifest, this.#keys?.encKey);
  }

  private async tryReadManifest(pointId: string, file = MANIFEST_FILE): Promise<Manifest | undefined> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.pointDir(pointId), file), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
      throw err;
    }
    return parseManifest(text, pointId, this.#keys?.encKey);
  }
}

/** Writes one restore point: disks first, manifest last. */
export class PointWriter {
  readonly id: string;
  readonly createdAt: Date;
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  private readonly writing = new Set<string>();
  private readonly disks: ManifestDisk[] = [];
  private marker?: Promise<ActiveWriterMarker>;

  constructor(
    private readonly repo: Repository,
    identity: { id: string; createdAt: Date } = newPointId(),
  ) {
    this.id = identity.id;
    this.createdAt = identity.createdAt;
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
      await this.startMarker();
      const stats = await this.repo.writeDiskData(this.id, key, source, opts);
      this.disks.push({ key, size: stats.size, chunkSize: this.repo.chunkSize, chunks: stats.chunks, meta });
      return stats;
    } finally {
      this.writing.delete(key);
    }
  }

  /**
   * @internal adds a disk whose index `write` produces itself (backup copy): runs after this writer's marker
   * exists, so a concurrent garbage collection keeps the chunks it references.
   */
  async addDisk(disk: ManifestDisk, write: () => Promise<void>): Promise<void> {
    assertDiskKey(disk.key);
    this.assertOpen('write a disk');
    if (this.writing.has(disk.key) || this.disks.some((d) => d.key === disk.key)) {
      throw new PointStateError(`point ${this.id} already has a disk ${disk.key}`);
    }
    const meta = checkMeta(disk.meta, `meta of disk ${disk.key}`);
    this.writing.add(disk.key);
    try {
      await this.startMarker();
      await fs.mkdir(this.repo.pointDir(this.id), { recursive: true });
      await write();
      this.disks.push({ ...disk, meta });
    } finally {
      this.writing.delete(disk.key);
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
    const marker = await this.marker;
    // A marker garbage collection removed as stale no longer protected our deduplicated chunks.
    if (marker && !(await marker.isPresent())) throw new StaleWriterError(this.id);
    this.state = 'committing';
    try {
      await writeFileAtomic(path.join(dir, MANIFEST_FILE), this.repo.encodeManifest(manifest));
    } catch (err) {
      this.state = 'open';
      throw err;
    }
    this.state = 'committed';
    await marker?.release();
    return manifest;
  }

  /** The in-progress marker goes first: before this writer stores or deduplicates against any chunk. */
  private startMarker(): Promise<ActiveWriterMarker> {
    this.marker ??= this.repo.writers.create(this.id);
    const marker = this.marker;
    marker.catch(() => this.marker === marker && (this.marker = undefined));
    return marker;
  }

  /** @internal stops this writer without removing what it wrote (a copy resumes from it); releases its marker. */
  async release(): Promise<void> {
    if (this.state === 'committed' || this.state === 'committing') return;
    this.state = 'aborted';
    await (await this.marker?.catch(() => undefined))?.release();
  }

  /** Drops an uncommitted point: removes its index files. Its chunks stay (garbage collection's job). */
  async abort(): Promise<void> {
    if (this.state === 'committed' || this.state === 'committing') throw new PointStateError(`point ${this.id} is committed and cannot be aborted`);
    if (this.writing.size) throw new PointStateError(`point ${this.id}: stop its disk writes (AbortSignal) before abort()`);
    this.state = 'aborted';
    await fs.rm(this.repo.pointDir(this.id), { recursive: true, force: true });
    await (await this.marker?.catch(() => undefined))?.release();
  }

  private assertOpen(action: string): void {
    if (this.state !== 'open') throw new PointStateError(`cannot ${action}: point ${this.id} is ${this.state}`);
  }
}
