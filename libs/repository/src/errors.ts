import type { LockHolder } from './locks';

/** Typed errors of the repository. Each carries a stable `code` so callers can map it without parsing text. */

export class RepositoryError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Where in a restore point a chunk was needed; added by the layers that know it. */
export interface ChunkContext {
  pointId?: string;
  diskKey?: string;
  /** Byte offset of the chunk in the disk. */
  offset?: number;
}

function describeContext(ctx: ChunkContext | undefined): string {
  if (!ctx) return '';
  const parts: string[] = [];
  if (ctx.pointId !== undefined) parts.push(`point ${ctx.pointId}`);
  if (ctx.diskKey !== undefined) parts.push(`disk ${ctx.diskKey}`);
  if (ctx.offset !== undefined) parts.push(`offset ${ctx.offset}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** A stored chunk failed a check (magic, CRC, length, id). Never answered with zeros. */
export class CorruptChunkError extends RepositoryError {
  constructor(
    readonly chunkId: string,
    readonly reason: string,
    readonly context?: ChunkContext,
  ) {
    super(`chunk ${chunkId} is corrupt: ${reason}${describeContext(context)}`, 'CHUNK_CORRUPT');
  }
  withContext(context: ChunkContext): CorruptChunkError {
    return new CorruptChunkError(this.chunkId, this.reason, { ...this.context, ...context });
  }
}

/** A chunk an index refers to is not in the store. Never answered with zeros. */
export class MissingChunkError extends RepositoryError {
  constructor(
    readonly chunkId: string,
    readonly context?: ChunkContext,
  ) {
    super(`chunk ${chunkId} is missing from the repository${describeContext(context)}`, 'CHUNK_MISSING');
  }
  withContext(context: ChunkContext): MissingChunkError {
    return new MissingChunkError(this.chunkId, { ...this.context, ...context });
  }
}

/** No repository (config file) at the given folder. */
export class RepositoryNotFoundError extends RepositoryError {
  constructor(dir: string) {
    super(`no repository at ${dir} (config file missing)`, 'REPOSITORY_NOT_FOUND');
  }
}

/** init() was pointed at a folder that already holds something. */
export class RepositoryNotEmptyError extends RepositoryError {
  constructor(dir: string) {
    super(`cannot create a repository in ${dir}: the folder is not empty`, 'REPOSITORY_NOT_EMPTY');
  }
}

/** A config, manifest or index file does not follow the format. */
export class RepositoryFormatError extends RepositoryError {
  constructor(what: string, reason: string) {
    super(`${what}: ${reason}`, 'REPOSITORY_FORMAT');
  }
}

/** A fixed index file is truncated, malformed or fails its checksum. */
export class IndexFormatError extends RepositoryError {
  constructor(
    readonly indexName: string,
    readonly reason: string,
  ) {
    super(`index ${indexName} is unreadable: ${reason}`, 'INDEX_FORMAT');
  }
}

/** The repository was written by a newer VMKeep, or uses a feature this version lacks. */
export class UnsupportedFormatError extends RepositoryError {
  constructor(message: string) {
    super(message, 'REPOSITORY_UNSUPPORTED');
  }
}

/** An option (chunk size, compression level, ...) is out of range. */
export class InvalidOptionError extends RepositoryError {
  constructor(message: string) {
    super(message, 'INVALID_OPTION');
  }
}

/** A disk key that is not a safe file name. */
export class InvalidDiskKeyError extends RepositoryError {
  constructor(readonly key: string) {
    super(
      `invalid disk key ${JSON.stringify(key)}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      'INVALID_DISK_KEY',
    );
  }
}

/** No committed restore point with this id. */
export class PointNotFoundError extends RepositoryError {
  constructor(readonly pointId: string) {
    super(`restore point ${JSON.stringify(pointId)} not found`, 'POINT_NOT_FOUND');
  }
}

/** The restore point exists but holds no disk with this key. */
export class PointDiskNotFoundError extends RepositoryError {
  constructor(
    readonly pointId: string,
    readonly diskKey: string,
  ) {
    super(`restore point ${pointId} has no disk ${JSON.stringify(diskKey)}`, 'POINT_DISK_NOT_FOUND');
  }
}

/** A PointWriter was used out of order (write after commit, same disk twice, commit while writing, ...). */
export class PointStateError extends RepositoryError {
  constructor(message: string) {
    super(message, 'POINT_STATE');
  }
}

/** writeDisk was stopped through its AbortSignal. Named AbortError like the platform's own. */
export class WriteAbortedError extends RepositoryError {
  constructor(readonly diskKey: string) {
    super(`writing disk ${diskKey} was aborted`, 'ABORTED');
    this.name = 'AbortError';
  }
}

/** An encrypted repository was opened without a passphrase. */
export class PassphraseRequiredError extends RepositoryError {
  constructor() {
    super('this repository is encrypted: a passphrase is required to open it', 'PASSPHRASE_REQUIRED');
  }
}

/** The passphrase does not unlock the repository's key file (or the key file was tampered with). */
export class WrongPassphraseError extends RepositoryError {
  constructor() {
    super('wrong passphrase: it does not unlock the repository key', 'WRONG_PASSPHRASE');
  }
}

/** A value sealed with the repository key failed authentication or its envelope is malformed. */
export class DecryptionError extends RepositoryError {
  constructor(what: string) {
    super(`${what}: authentication failed (damaged, or not written with this repository's key)`, 'DECRYPTION_FAILED');
  }
}

/** The point is archived and locked (retain-until not reached, or a legal hold): it cannot be removed or altered. */
export class ArchiveLockedError extends RepositoryError {
  constructor(
    readonly pointId: string,
    readonly retainUntil: string,
    readonly legalHold: boolean,
  ) {
    super(
      `restore point ${pointId} is archived and locked (${legalHold ? 'legal hold' : `retained until ${retainUntil}`}): ` +
        'it cannot be removed or altered',
      'ARCHIVE_LOCKED',
    );
  }
}

/** An archive change that would weaken the lock (shorter retain-until), or an invalid date. */
export class ArchiveChangeError extends RepositoryError {
  constructor(message: string) {
    super(message, 'ARCHIVE_CHANGE_REFUSED');
  }
}

/** A retention policy that is empty, negative or names an unknown time zone. */
export class InvalidRetentionPolicyError extends RepositoryError {
  constructor(message: string) {
    super(message, 'INVALID_RETENTION_POLICY');
  }
}

/**
 * A writer's in-progress marker disappeared (garbage collection judged it stale): chunks the writer deduplicated
 * against may have been swept, so its point is refused instead of committed.
 */
export class StaleWriterError extends RepositoryError {
  constructor(readonly pointId: string) {
    super(
      `point ${pointId}: the writer's in-progress marker was removed as stale; the point is not committed (back up again)`,
      'WRITER_STALE',
    );
  }
}

/** Another live process holds the repository's exclusive lock (GC, prune, passphrase change). Names the holder. */
export class RepositoryLockedError extends RepositoryError {
  constructor(
    readonly holder: LockHolder,
    /** ISO time of the holder's last refresh (file-system clock). */
    readonly refreshedAt: string,
  ) {
    super(
      `repository is locked by ${holder.operation} (host ${holder.host}, pid ${holder.pid}, since ${holder.startedAt}, ` +
        `last refreshed ${refreshedAt}); try again when it has finished`,
      'REPOSITORY_LOCKED',
    );
  }
}
