/** Public shapes of the guest file index. */

/** Kinds of index entries (a subset of the file-system readers' types, one letter each on disk). */
export type IndexedType = 'file' | 'directory' | 'symlink' | 'other';

/** One file of one file system of one disk of a restore point. */
export interface IndexEntry {
  /** `<disk key>:<partition index>` (0 for a disk without a partition table), e.g. "disk-2000:1". */
  volume: string;
  /** Absolute "/"-separated path inside the file system. */
  path: string;
  type: IndexedType;
  size: number;
  /** Modification time, ms since the epoch (0 when the reader had none). */
  mtimeMs: number;
}

/** A file system the indexer walked (or tried to). */
export interface IndexedVolume {
  volume: string;
  /** File-system type ("ext4", "ntfs", ...), or "" when none could be opened. */
  fsType: string;
  label: string;
  entries: number;
  /** The view may be stale (journal needing recovery, not cleanly unmounted). */
  dirty: boolean;
}

/** One page of a point's index as listed in the point record. */
export interface PageRef {
  /** SHA-256 (hex) of the page's uncompressed encoding; HMAC-SHA256 with the index key when encrypted. */
  id: string;
  entries: number;
}

/** The per-point record: which pages hold the point's sorted entries. */
export interface PointIndexRecord {
  version: 1;
  pointId: string;
  /** When the index was written (ISO 8601). */
  indexedAt: string;
  pages: PageRef[];
  entries: number;
  volumes: IndexedVolume[];
  /** Problems that did not stop indexing: unsupported or damaged file systems, unreadable folders, limits hit. */
  warnings: string[];
  /** Indexing stopped early (limit, cancellation): the index lists fewer files than the point holds. */
  partial: boolean;
}

/**
 * Encryption of an encrypted repository's index (`Repository.subkeySealer('file-index')` gives one): AES-256-GCM
 * sealing bound to `aad`, and an HMAC-SHA256 for keyed page ids.
 */
export interface IndexSealer {
  seal(plain: Uint8Array, aad: string): Buffer;
  /** undefined when the value is damaged, forged or sealed for another `aad`. */
  open(sealed: Uint8Array, aad: string): Buffer | undefined;
  mac(data: Uint8Array): Buffer;
}
