/**
 * Where a repository's objects live. Keys are `/`-separated paths relative to the repository root (`config.json`,
 * `chunks/ab12/<id>`, ...). Every write is atomic: a reader sees the old object, or nothing, or the whole new one.
 */
import { RepositoryError } from '../errors';

export interface ObjectInfo {
  /** Key relative to the repository root. */
  key: string;
  size: number;
  /** Last write or touch, on the storage's own clock. */
  mtimeMs: number;
}

export interface ObjectStorage {
  /** Where it is, for messages (never holds a secret). */
  readonly description: string;
  /** The object's bytes, or undefined when it does not exist. */
  get(key: string): Promise<Buffer | undefined>;
  /** Size and time of the object, or undefined when it does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Creates or replaces the object atomically. */
  put(key: string, data: Uint8Array | string): Promise<void>;
  /** Creates the object unless it exists; false when it existed (the existing object is left untouched). */
  putIfAbsent(key: string, data: Uint8Array | string): Promise<boolean>;
  /** Every object whose key starts with `prefix` (a folder ends with `/`), in key order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Removes the object; no error when it is absent. */
  delete(key: string): Promise<void>;
  /** Sets the object's time to now; false when it does not exist. */
  touch(key: string): Promise<boolean>;
  /** The storage's clock (ms), so hosts with skewed clocks agree on ages. */
  now(): Promise<number>;
  /**
   * Protects an object from deletion and overwrite until `retainUntil` (and while on legal hold) where the storage
   * can enforce it; false when it cannot (the repository's own archive rules still apply).
   */
  protect(key: string, retainUntil: Date, legalHold: boolean): Promise<boolean>;
  /** Releases resources (connections). */
  close(): Promise<void>;
}

const KEY_PATTERN = /^(?!\/)(?!.*\/\/)(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._/-]+$/;

/** Checks a key is relative, without `.`/`..` segments or empty segments, in the repository's alphabet. */
export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024 || !KEY_PATTERN.test(key)) {
    throw new RepositoryError(`invalid storage key ${JSON.stringify(key)}`, 'INVALID_STORAGE_KEY');
  }
  return key;
}

/** Checks a list prefix: empty (everything) or a key-shaped string. */
export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  return checkKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix) && prefix;
}

/** An I/O failure of the storage (network, permissions, server error), with the operation and key. */
export class StorageError extends RepositoryError {
  constructor(operation: string, key: string, where: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`storage ${where}: ${operation} ${key || '(root)'} failed: ${reason}`, 'STORAGE_ERROR');
  }
}
