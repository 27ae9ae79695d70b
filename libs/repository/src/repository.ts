/**
 * A repository: config, chunk store, restore points (fixed indexes + manifest), in a folder or on object storage
 * (S3). Layout in ../FORMAT.md.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Disk, Extent } from '@vmkeep/disk';
import { ArchiveChange, ArchiveRecords, ArchiveStatus } from './archive';
import { fsyncDir, writeFileAtomic } from './atomic';
import { BadChunkList, BadChunkRecord } from './bad-chunks';
import { ChunkCodec, sharedChunkWorkers } from './chunk-workers';
import { ChunkStore, FsChunkStore } from './chunk-store';
import { ChunkIdScheme, decodeBlob } from './codec';
import {
  ARCHIVES_DIR,
  CHUNKS_DIR,
  CONFIG_FILE,
  INDEX_EXT,
  KEY_BYTES,
  LOCKS_DIR,
  KEY_FILE,
  MANIFEST_DELETING_FILE,
  MANIFEST_FILE,
  MAX_DISK_SIZE,
  POINTS_DIR,
  WRITERS_DIR,
} from './constants';
import { KdfStrength, KeyMaterial, RepositoryKeys, kdfParams, parseKeyFile, unwrapKeys, wrapKeys } from './crypto';
import { SubkeySealer } from './subkeys';
import {
  ArchiveLockedError,
  IndexFormatError,
  InvalidOptionError,
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
import { FixedIndex, FixedIndexWriter, parseFixedIndex } from './fixed-index';
import { RepositoryDescription, describeRepository } from './describe';
import { GcOptions, GcReport, collectGarbage } from './gc';
import { collectGarbageOnStorage } from './gc-storage';
import { parseRepositoryLocation } from './location';
import {
  DEFAULT_LOCK_STALE_MS,
  ExclusiveLock,
  HeldExclusiveLock,
  LockOptions,
  RepositoryExclusiveLock,
  StaleLock,
  withExclusiveLock,
} from './locks';
import { parseManifest, serializeManifest } from './manifest';
import { assertDiskKey, isPointId, newPointId } from './names';
import { PointDisk } from './point-disk';
import { InitOptions, RepositoryConfig, newConfig, parseConfig } from './repo-config';
import { PrunePlan, RetentionPolicy, planPrune } from './retention';
import type { DiskWriteStats, Manifest, ManifestDisk, WriteProgress } from './types';
import { VerifyOptions, VerifyReport, verifyRepository } from './verify';
import { FsStorage, ObjectStorage, S3Storage, S3StorageOptions } from './storage';
import { StorageChunkStore, chunkKey } from './storage-chunk-store';
import { StorageExclusiveLock, StorageWriterMarkers } from './storage-locks';
import { writeDiskChunks } from './write-disk';
import { WriterHandle, WriterMarkerStore, WriterMarkers } from './writers';

/** How long openOrInit waits for another process initialising the same location. */
const INIT_WAIT_MS = 30_000;

/** How this process works with the repository (not stored in it). */
/** How `openDisk` reads. */
export interface OpenDiskOptions {
  /**
   * Load the next chunks ahead of a sequential reader (default true). Off for readers of scattered metadata (the
   * guest file index): two neighbouring chunks read one after the other would otherwise start up to 12 MiB of
   * decodes nobody uses.
   */
  readAhead?: boolean;
}

export interface RuntimeOptions {
  /** Where hashing/compression runs; default: the process-wide worker-thread pool. */
  codec?: ChunkCodec;
  /** Chunks in flight per disk being written; default 4. */
  concurrency?: number;
  /** Passphrase of an encrypted repository (required to open or create one; never stored or logged). */
  passphrase?: string;
  /**
   * Opens an encrypted repository with the master keys another open `Repository` of this process handed out
   * (`unlockedKeys()`, e.g. posted to a worker thread) instead of the passphrase: no KDF run. Taken before
   * `passphrase`; keys of another repository are an InvalidOptionError. Never log or store it.
   */
  unlockedKeys?: UnlockedKeysData;
  /** An exclusive lock (GC, prune, passphrase change) not refreshed for this long is stale; default 5 min. */
  lockStaleMs?: number;
  /** Told about every stale lock this process takes over (exclusive lock, dead writers' markers). */
  onStaleLock?: (stale: StaleLock) => void;
  /** How to reach the server of an `s3://BUCKET/PREFIX` location (endpoint, region, credentials, path style). */
  s3?: Omit<S3StorageOptions, 'bucket' | 'prefix'>;
}

/** The plain shape of `UnlockedKeys` once structured-cloned to another thread (workerData, postMessage). */
export interface UnlockedKeysData {
  /** The config id of the repository the keys belong to. */
  repositoryId: string;
  /** encKey ‖ idKey, 64 bytes. */
  keys: Uint8Array;
}

/**
 * The unwrapped master keys of an open encrypted repository, for another thread to open the same repository
 * without running the KDF again. Structured-cloneable (the clone is a plain `UnlockedKeysData`); printing or
 * JSON-encoding this object shows no key bytes. Never write it anywhere.
 */
export class UnlockedKeys extends KeyMaterial implements UnlockedKeysData {
  constructor(
    readonly repositoryId: string,
    readonly keys: Uint8Array,
  ) {
    super();
  }
}

/** Where a repository is: a folder path, `s3://BUCKET/PREFIX` (with RuntimeOptions.s3), or a ready storage. */
export type RepositoryTarget = string | ObjectStorage;

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

/** The storage a target names (a folder path becomes an FsStorage). */
function storageFor(where: RepositoryTarget, runtime: RuntimeOptions): ObjectStorage {
  if (typeof where !== 'string') return where;
  if (/^s3:\/\//i.test(where.trim())) {
    const location = parseRepositoryLocation(where);
    if (location.kind === 's3') return new S3Storage({ ...runtime.s3, bucket: location.bucket, prefix: location.prefix });
  }
  return new FsStorage(path.resolve(where));
}

/** How a storage is named in messages and compared (`Repository.dir`): the folder path, or its description. */
function nameOf(storage: ObjectStorage): string {
  return storage instanceof FsStorage ? storage.root : storage.description;
}

/** The master keys of `unlocked`, checked to belong to the repository `repositoryId`. */
function keysFromUnlocked(unlocked: UnlockedKeysData, repositoryId: string): RepositoryKeys {
  const { keys } = unlocked;
  if (unlocked.repositoryId !== repositoryId) {
    throw new InvalidOptionError(`the unlocked keys belong to repository ${String(unlocked.repositoryId)}, not ${repositoryId}`);
  }
  if (!(keys instanceof Uint8Array) || keys.length !== 2 * KEY_BYTES) throw new InvalidOptionError(`the unlocked keys must be ${2 * KEY_BYTES} bytes`);
  return new RepositoryKeys(Buffer.from(keys.buffer, keys.byteOffset, KEY_BYTES), Buffer.from(keys.buffer, keys.byteOffset + KEY_BYTES, KEY_BYTES));
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
  /** Where everything is stored (a folder's FsStorage, or S3Storage). */
  readonly storage: ObjectStorage;
  /** The chunk store (exposed for verify/GC tooling and tests). */
  readonly store: ChunkStore;
  /** Chunks verify found bad (re-uploaded by the next backup). */
  readonly badChunks: BadChunkList;
  /** Archive records (write-once revisions). */
  readonly archives: ArchiveRecords;
  /** In-progress markers of running writers (their shared locks). */
  readonly writers: WriterMarkerStore;
  /** The exclusive lock of GC, prune and passphrase change (FORMAT.md, "Locks"). */
  readonly lock: RepositoryExclusiveLock;
  private readonly scheme: ChunkIdScheme;
  private readonly codec: ChunkCodec;
  private readonly concurrency: number;
  private readonly lockOptions: LockOptions;
  readonly #keys?: RepositoryKeys;

  /** The folder path of a local repository, else the storage's description (`s3://bucket/prefix at endpoint`). */
  readonly dir: string;

  private constructor(
    storage: ObjectStorage,
    readonly config: RepositoryConfig,
    runtime: RuntimeOptions,
    keys?: RepositoryKeys,
  ) {
    this.storage = storage;
    this.dir = nameOf(storage);
    this.chunkSize = config.chunkSize;
    this.compressionLevel = config.compression.level;
    this.#keys = keys;
    this.scheme = keys ? { algorithm: 'hmac-sha256', key: keys.idKey } : { algorithm: 'sha256' };
    const root = storage instanceof FsStorage ? storage.root : undefined;
    this.store = root ? new FsChunkStore(path.join(root, CHUNKS_DIR)) : new StorageChunkStore(storage);
    this.badChunks = new BadChunkList(storage);
    this.archives = new ArchiveRecords(storage);
    this.writers = root ? new WriterMarkers(path.join(root, WRITERS_DIR)) : new StorageWriterMarkers(storage);
    this.lock = root ? new ExclusiveLock(path.join(root, LOCKS_DIR)) : new StorageExclusiveLock(storage);
    this.lockOptions = { staleMs: runtime.lockStaleMs, onStale: runtime.onStaleLock };
    this.codec = runtime.codec ?? sharedChunkWorkers();
    this.concurrency = runtime.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RepositoryError(`concurrency must be a positive integer, got ${this.concurrency}`, 'INVALID_OPTION');
    }
  }

  /**
   * Creates a repository in a folder (created if missing) or at `s3://BUCKET/PREFIX`. Refuses a location that
   * holds anything. With `opts.encrypt`, `runtime.passphrase` wraps the new random master keys.
   */
  static async init(where: RepositoryTarget, opts: InitOptions = {}, runtime: RuntimeOptions = {}): Promise<Repository> {
    const config = newConfig(opts);
    let keys: RepositoryKeys | undefined;
    let keyFile: string | undefined;
    if (config.encryption) {
      if (runtime.passphrase === undefined) throw new PassphraseRequiredError();
      keys = RepositoryKeys.generate();
      keyFile = JSON.stringify(await wrapKeys(keys, runtime.passphrase, config.id, kdfParams(opts.kdf)), null, 2) + '\n';
    }
    const storage = storageFor(where, runtime);
    try {
      if (storage instanceof FsStorage) {
        const root = storage.root;
        await fs.mkdir(root, { recursive: true });
        if ((await fs.readdir(root)).length > 0) throw new RepositoryNotEmptyError(root);
        // Creating the chunks folder is what claims the location: of several callers that all found it empty,
        // exactly one succeeds here and writes the config; the others see a non-empty location.
        await fs.mkdir(path.join(root, CHUNKS_DIR)).catch((err: unknown) => {
          throw (err as NodeJS.ErrnoException).code === 'EEXIST' ? new RepositoryNotEmptyError(root) : err;
        });
        await fs.mkdir(path.join(root, POINTS_DIR));
        await fsyncDir(root);
      } else if ((await storage.list('')).length > 0) {
        throw new RepositoryNotEmptyError(storage.description);
      }
      if (keyFile) await storage.put(KEY_FILE, keyFile);
      // The config goes last: a location without it is not a repository, whatever else is there.
      const text = JSON.stringify(config, null, 2) + '\n';
      if (storage instanceof FsStorage) await storage.put(CONFIG_FILE, text);
      else if (!(await storage.putIfAbsent(CONFIG_FILE, text))) throw new RepositoryNotEmptyError(nameOf(storage));
    } catch (err) {
      if (storage !== where) await storage.close();
      throw err;
    }
    return new Repository(storage, config, runtime, keys);
  }

  /** Opens an existing repository; refuses a missing config and formats newer than this code. */
  static async open(where: RepositoryTarget, runtime: RuntimeOptions = {}): Promise<Repository> {
    const storage = storageFor(where, runtime);
    try {
      const where = storage instanceof FsStorage ? path.join(storage.root, CONFIG_FILE) : `${storage.description} ${CONFIG_FILE}`;
      const data = await storage.get(CONFIG_FILE);
      if (!data) throw new RepositoryNotFoundError(nameOf(storage));
      const config = parseConfig(data.toString('utf8'), `repository config ${where}`);
      if (!config.encryption) return new Repository(storage, config, runtime);
      if (runtime.unlockedKeys) return new Repository(storage, config, runtime, keysFromUnlocked(runtime.unlockedKeys, config.id));
      if (runtime.passphrase === undefined) throw new PassphraseRequiredError();
      const keys = await unwrapKeys(await Repository.readKeyFile(storage), runtime.passphrase, config.id);
      return new Repository(storage, config, runtime, keys);
    } catch (err) {
      if (storage !== where) await storage.close();
      throw err;
    }
  }

  private static async readKeyFile(storage: ObjectStorage) {
    const data = await storage.get(KEY_FILE);
    if (!data) throw new RepositoryFormatError(`repository ${nameOf(storage)}`, 'encrypted, but its key file is missing');
    return parseKeyFile(data.toString('utf8'), `key file ${KEY_FILE} of ${nameOf(storage)}`);
  }

  /** Releases the storage's connections (S3); the repository is unusable afterwards. */
  close(): Promise<void> {
    return this.storage.close();
  }

  /** Whether the repository is a folder (FsStorage) rather than object storage. */
  get local(): boolean {
    return this.storage instanceof FsStorage;
  }

  /** @internal the chunk store of a folder repository (its files, for GC and tests). */
  get localStore(): FsChunkStore {
    if (!(this.store instanceof FsChunkStore)) {
      throw new RepositoryError(`${this.dir} is not a folder repository`, 'NOT_SUPPORTED');
    }
    return this.store;
  }

  /** Whether chunks, indexes and manifests are encrypted. */
  get encrypted(): boolean {
    return this.#keys !== undefined;
  }

  /**
   * The master keys, for `RuntimeOptions.unlockedKeys` on another thread of this process (a fresh copy each call);
   * undefined when not encrypted.
   */
  unlockedKeys(): UnlockedKeys | undefined {
    const keys = this.#keys;
    if (!keys) return undefined;
    // A buffer of its own (not a slice of Node's shared pool): cloning it to a worker copies these 64 bytes only.
    const bytes = new Uint8Array(2 * KEY_BYTES);
    bytes.set(keys.encKey);
    bytes.set(keys.idKey, KEY_BYTES);
    return new UnlockedKeys(this.config.id, bytes);
  }

  /** Keys for `purpose` derived from the master keys (libs/repository/src/subkeys.ts); undefined when not encrypted. */
  subkeySealer(purpose: string): SubkeySealer | undefined {
    return this.#keys && SubkeySealer.derive(this.#keys, this.config.id, purpose);
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
    const existing = await unwrapKeys(await Repository.readKeyFile(this.storage), current, this.config.id);
    if (!existing.equals(this.#keys)) {
      throw new RepositoryError('the key file no longer holds the keys this repository was opened with', 'KEY_MISMATCH');
    }
    const file = await wrapKeys(this.#keys, next, this.config.id, kdfParams(kdf));
    await this.storage.put(KEY_FILE, JSON.stringify(file, null, 2) + '\n');
  }

  /**
   * Opens the repository at `where`, or creates one there if the location is missing or empty. Several processes
   * may do this at once: one initialises, the others wait (up to `INIT_WAIT_MS`) for its config, which is written
   * last. A location that holds something else stays a RepositoryNotEmptyError.
   */
  static async openOrInit(where: RepositoryTarget, opts: InitOptions = {}, runtime: RuntimeOptions = {}): Promise<Repository> {
    try {
      return await Repository.open(where, runtime);
    } catch (err) {
      if (!(err instanceof RepositoryNotFoundError)) throw err;
    }
    try {
      return await Repository.init(where, opts, runtime);
    } catch (err) {
      if (!(err instanceof RepositoryNotEmptyError)) throw err;
      for (const deadline = Date.now() + INIT_WAIT_MS; Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 200));
        try {
          return await Repository.open(where, runtime);
        } catch (openErr) {
          if (!(openErr instanceof RepositoryNotFoundError)) throw openErr;
        }
      }
      throw err;
    }
  }

  /** Starts a new restore point; it stays invisible until commit(). */
  beginPoint(): PointWriter {
    return new PointWriter(this);
  }

  /** Committed restore points (those with a manifest), oldest first. */
  async listPoints(): Promise<Manifest[]> {
    const names = await this.listPointIds();
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
  async openDisk(pointId: string, diskKey: string, opts: OpenDiskOptions = {}): Promise<PointDisk> {
    assertDiskKey(diskKey);
    const manifest = await this.readManifest(pointId);
    const disk = manifest.disks.find((d) => d.key === diskKey);
    if (!disk) throw new PointDiskNotFoundError(pointId, diskKey);
    const index = await this.readIndex(pointId, disk);
    const readAhead = opts.readAhead === false ? 0 : undefined;
    return new PointDisk(index, (id) => this.loadChunk(id), pointId, diskKey, undefined, readAhead, this.codec.recycle?.bind(this.codec));
  }

  /** The checked (and, encrypted, authenticated) index of a disk of a point, matched against its manifest entry. */
  async readIndex(pointId: string, disk: ManifestDisk): Promise<FixedIndex> {
    assertDiskKey(disk.key);
    const name = `${pointId}/${disk.key}`;
    const data = await this.storage.get(this.indexKey(pointId, disk.key));
    if (!data) throw new IndexFormatError(name, 'index file is missing');
    const index = parseFixedIndex(data, name, this.#keys?.encKey);
    if (index.diskSize !== disk.size || index.chunkSize !== disk.chunkSize) {
      throw new IndexFormatError(name, 'disk size or chunk size differs from the manifest');
    }
    return index;
  }

  /** A chunk's verified plaintext (checked and decoded on the chunk worker pool). */
  async loadChunk(id: Buffer): Promise<Buffer> {
    const file = this.store instanceof FsChunkStore ? this.store.fileOf(id) : undefined;
    if (file) return this.codec.decodeFile(id, file, this.scheme, this.#keys?.encKey);
    return this.codec.decode(id, await this.store.get(id), this.scheme, this.#keys?.encKey);
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
  async createIndexWriter(pointId: string, diskKey: string, diskSize: number): Promise<FixedIndexWriter> {
    assertDiskKey(diskKey);
    const encKey = this.#keys?.encKey;
    const name = `${pointId}/${diskKey}`;
    const sealing = encKey && { key: encKey, name };
    if (!this.local) {
      const key = this.indexKey(pointId, diskKey);
      return FixedIndexWriter.createForUpload(name, diskSize, this.chunkSize, sealing, (data) => this.storage.put(key, data));
    }
    await fs.mkdir(this.pointDir(pointId), { recursive: true });
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
    const run = this.local ? collectGarbage : collectGarbageOnStorage;
    if (opts.dryRun) return run(this, opts);
    const staleLocks: StaleLock[] = [];
    return this.exclusively('gc', staleLocks, (held) =>
      run(this, opts, { staleLocks, beforeSweep: () => held.assertHeld(), onStale: this.lockOptions.onStale }),
    );
  }

  /** What the repository holds (config, every committed point with VM name, time, disks, sizes, archive state). */
  describe(opts: { storage?: boolean } = {}): Promise<RepositoryDescription> {
    return describeRepository(this, opts);
  }

  /** Runs `fn` under the exclusive lock; stale locks taken over go to `staleLocks` and the runtime's onStaleLock. */
  private exclusively<T>(operation: string, staleLocks: StaleLock[], fn: (held: HeldExclusiveLock) => Promise<T>): Promise<T> {
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
    if (!this.local) return this.deletePointOnStorage(pointId);
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

  /**
   * Object storage has no rename: the manifest is copied to `manifest.deleting` first and then removed; the rest
   * is as in a folder (FORMAT.md, "Object storage").
   */
  private async deletePointOnStorage(pointId: string): Promise<void> {
    const manifest = await this.storage.get(this.pointKey(pointId, MANIFEST_FILE));
    if (!manifest) throw new PointNotFoundError(pointId);
    await this.storage.put(this.pointKey(pointId, MANIFEST_DELETING_FILE), manifest);
    await this.storage.delete(this.pointKey(pointId, MANIFEST_FILE));
    try {
      await this.assertNotLocked(pointId);
    } catch (err) {
      await this.restoreDeleting(pointId);
      throw err;
    }
    await this.finishDelete(pointId);
  }

  /** @internal removes every object of a point (object storage), the `manifest.deleting` marker last. */
  async removePointObjects(pointId: string): Promise<void> {
    const deleting = this.pointKey(pointId, MANIFEST_DELETING_FILE);
    const keys = (await this.storage.list(this.pointKey(pointId, ''))).map((o) => o.key);
    for (const key of keys) if (key !== deleting) await this.storage.delete(key);
    await this.storage.delete(deleting);
  }

  /** @internal completes a delete past its decision point: manifest first, then the indexes and the folder. */
  async finishDelete(pointId: string): Promise<void> {
    if (!this.local) return this.removePointObjects(pointId);
    const dir = this.pointDir(pointId);
    await fs.rm(path.join(dir, MANIFEST_DELETING_FILE), { force: true });
    await fsyncDir(dir).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
    await fsyncDir(this.pointsDir());
  }

  /** @internal undoes a delete that was interrupted before its decision (the point was archived meanwhile). */
  async restoreDeleting(pointId: string): Promise<void> {
    if (!this.local) {
      const deleting = this.pointKey(pointId, MANIFEST_DELETING_FILE);
      const data = await this.storage.get(deleting);
      if (data) await this.storage.putIfAbsent(this.pointKey(pointId, MANIFEST_FILE), data);
      await this.storage.delete(deleting);
      return;
    }
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
    if (!this.local) await this.protectArchive(pointId);
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

  /**
   * Sets Object Lock retention (retain-until, compliance mode) and the legal hold on every object of an archived
   * point: manifest, indexes, archive records and the chunks it references, where the bucket supports Object Lock
   * (else the repository's own archive rules protect it, as in a folder). Stops at the first `false`.
   */
  private async protectArchive(pointId: string): Promise<void> {
    const status = await this.archives.status(pointId);
    if (!status) return;
    const until = new Date(status.retainUntil);
    const protect = (key: string) => this.storage.protect(key, until, status.legalHold);
    const manifest = await this.readManifest(pointId);
    const keys = [this.pointKey(pointId, MANIFEST_FILE), ...manifest.disks.map((d) => this.indexKey(pointId, d.key))];
    keys.push(...(await this.storage.list(`${ARCHIVES_DIR}/${pointId}/`)).map((o) => o.key));
    for (const key of keys) if (!(await protect(key))) return;
    const chunks = new Set<string>();
    for (const disk of manifest.disks) {
      const index = await this.readIndex(pointId, disk);
      for (let i = 0; i < index.count; i++) if (!index.isZero(i)) chunks.add(index.idAt(i).toString('hex'));
    }
    for (const hex of [...chunks].sort()) await protect(chunkKey(Buffer.from(hex, 'hex')));
  }

  /** Ids of every point that has objects (committed, being deleted or partial), sorted. */
  private async listPointIds(): Promise<string[]> {
    if (this.local) return (await fs.readdir(this.pointsDir())).filter(isPointId).sort();
    const ids = new Set((await this.storage.list(`${POINTS_DIR}/`)).map((o) => o.key.split('/')[1]));
    return [...ids].filter(isPointId).sort();
  }

  /** Every folder under points/, with what it holds. */
  async listPointFolders(): Promise<PointFolder[]> {
    if (!this.local) return this.listPointPrefixes();
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

  /** The points on object storage: a point's time is that of its newest object. */
  private async listPointPrefixes(): Promise<PointFolder[]> {
    const byId = new Map<string, { names: Set<string>; mtimeMs: number }>();
    for (const o of await this.storage.list(`${POINTS_DIR}/`)) {
      const [, id, name] = o.key.split('/');
      if (!isPointId(id) || name === undefined) continue;
      const entry = byId.get(id) ?? { names: new Set<string>(), mtimeMs: 0 };
      entry.names.add(name);
      entry.mtimeMs = Math.max(entry.mtimeMs, o.mtimeMs);
      byId.set(id, entry);
    }
    return [...byId.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, { names, mtimeMs }]) => ({
        id,
        state: names.has(MANIFEST_FILE) ? 'committed' : names.has(MANIFEST_DELETING_FILE) ? 'deleting' : 'partial',
        mtimeMs,
      }));
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
    const exists = async (name: string) => (await this.storage.stat(this.pointKey(pointId, name))) !== undefined;
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

  /** @internal the storage key of `name` in a point (`''` = the point's prefix). */
  pointKey(pointId: string, name: string): string {
    return `${POINTS_DIR}/${pointId}/${name}`;
  }

  /** @internal */
  indexKey(pointId: string, diskKey: string): string {
    return this.pointKey(pointId, diskKey + INDEX_EXT);
  }

  /**
   * @internal creates a writer's in-progress marker. On object storage a writer then checks the exclusive lock:
   * while a live garbage collection holds it, the writer withdraws its marker and refuses to start
   * (RepositoryLockedError) — FORMAT.md, "Object storage".
   */
  async startWriter(pointId: string): Promise<WriterHandle> {
    const marker = await this.writers.create(pointId);
    if (this.lock instanceof StorageExclusiveLock) {
      try {
        const current = await this.lock.holder();
        if (current && (current.holder === undefined || current.holder.operation === 'gc')) {
          await this.lock.staleReason(this.lockOptions.staleMs ?? DEFAULT_LOCK_STALE_MS);
        }
      } catch (err) {
        await marker.release().catch(() => undefined);
        throw err;
      }
    }
    return marker;
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
    const encKey = this.#keys?.encKey;
    const index = await this.createIndexWriter(pointId, key, size);
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
        onBadChunk: (hex: string, reason: string) => this.badChunks.add(hex, reason),
      };
      const parent = opts.parent && {
        index: await this.readIndex(opts.parent.pointId, await this.manifestDisk(opts.parent.pointId, opts.parent.diskKey)),
        changed: opts.parent.changed,
        name: `point ${opts.parent.pointId} disk ${opts.parent.diskKey}`,
        load: (id: Buffer) => this.loadChunk(id),
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
    const data = await this.storage.get(this.pointKey(pointId, file));
    return data && parseManifest(data.toString('utf8'), pointId, this.#keys?.encKey);
  }
}

/** Writes one restore point: disks first, manifest last. */
export class PointWriter {
  readonly id: string;
  readonly createdAt: Date;
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  private readonly writing = new Set<string>();
  private readonly disks: ManifestDisk[] = [];
  private marker?: Promise<WriterHandle>;

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
      if (this.repo.local) await fs.mkdir(this.repo.pointDir(this.id), { recursive: true });
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
    if (this.repo.local) {
      await fs.mkdir(dir, { recursive: true });
      await fsyncDir(this.repo.pointsDir());
    }
    await this.repo.store.flush(); // every chunk the indexes name is durable before the manifest
    const marker = await this.marker;
    // A marker garbage collection removed as stale no longer protected our deduplicated chunks.
    if (marker && !(await marker.isPresent())) throw new StaleWriterError(this.id);
    this.state = 'committing';
    try {
      const encoded = this.repo.encodeManifest(manifest);
      if (this.repo.local) await writeFileAtomic(path.join(dir, MANIFEST_FILE), encoded);
      else await this.repo.storage.put(this.repo.pointKey(this.id, MANIFEST_FILE), encoded);
    } catch (err) {
      this.state = 'open';
      throw err;
    }
    this.state = 'committed';
    await marker?.release();
    return manifest;
  }

  /** The in-progress marker goes first: before this writer stores or deduplicates against any chunk. */
  private startMarker(): Promise<WriterHandle> {
    this.marker ??= this.repo.startWriter(this.id);
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
    if (this.repo.local) await fs.rm(this.repo.pointDir(this.id), { recursive: true, force: true });
    else await this.repo.removePointObjects(this.id);
    await (await this.marker?.catch(() => undefined))?.release();
  }

  private assertOpen(action: string): void {
    if (this.state !== 'open') throw new PointStateError(`cannot ${action}: point ${this.id} is ${this.state}`);
  }
}
