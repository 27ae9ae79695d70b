/** The repository config file (`config.json` at the root): format version and the repository's parameters. */
import { randomUUID } from 'node:crypto';
import {
  CIPHER,
  CHUNK_ID_HMAC_SHA256,
  CHUNK_ID_SHA256,
  CONFIG_MAGIC,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_COMPRESSION_LEVEL,
  FORMAT_VERSION,
  MAX_CHUNK_SIZE,
  MAX_COMPRESSION_LEVEL,
  MIN_CHUNK_SIZE,
  MIN_COMPRESSION_LEVEL,
} from './constants';
import type { KdfStrength } from './crypto';
import { InvalidOptionError, RepositoryFormatError, UnsupportedFormatError } from './errors';

/** Encryption settings of an encrypted repository; the wrapped keys live in the key file (FORMAT.md). */
export interface EncryptionConfig {
  cipher: typeof CIPHER;
}

export interface RepositoryConfig {
  magic: typeof CONFIG_MAGIC;
  format: number;
  /** Random id of this repository (so a copy target can tell repositories apart). */
  id: string;
  createdAt: string;
  chunkSize: number;
  /** Chunk id algorithm: 'sha256' (unencrypted) or 'hmac-sha256' (encrypted). */
  chunkId: string;
  compression: { algorithm: 'zstd'; level: number };
  /** null = unencrypted. */
  encryption: EncryptionConfig | null;
}

export interface InitOptions {
  /** Bytes per chunk, a power of two from 256 KiB to 8 MiB; default 1 MiB. */
  chunkSize?: number;
  /** zstd level 1-19; default 3. */
  compressionLevel?: number;
  /**
   * Encrypt the repository (chunks, indexes, manifests) with keys wrapped by `RuntimeOptions.passphrase`.
   * Chosen once, at init.
   */
  encrypt?: boolean;
  /** Cost of the passphrase KDF; default 'standard'. 'insecure-fast-for-tests' exists for test suites only. */
  kdf?: KdfStrength;
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

function checkChunkSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && isPowerOfTwo(n);
}

function checkLevel(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_COMPRESSION_LEVEL && n <= MAX_COMPRESSION_LEVEL;
}

export function newConfig(opts: InitOptions = {}): RepositoryConfig {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const level = opts.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  if (!checkChunkSize(chunkSize)) {
    throw new InvalidOptionError(`chunk size must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}, got ${chunkSize}`);
  }
  if (!checkLevel(level)) {
    throw new InvalidOptionError(`compression level must be ${MIN_COMPRESSION_LEVEL}-${MAX_COMPRESSION_LEVEL}, got ${level}`);
  }
  return {
    magic: CONFIG_MAGIC,
    format: FORMAT_VERSION,
    id: randomUUID(),
    createdAt: new Date().toISOString(),
    chunkSize,
    chunkId: opts.encrypt ? CHUNK_ID_HMAC_SHA256 : CHUNK_ID_SHA256,
    compression: { algorithm: 'zstd', level },
    encryption: opts.encrypt ? { cipher: CIPHER } : null,
  };
}

/** Parses and checks a config file; refuses newer formats and features this version does not implement. */
export function parseConfig(text: string, where: string): RepositoryConfig {
  const bad = (reason: string) => new RepositoryFormatError(where, reason);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('not valid JSON');
  }
  if (typeof v !== 'object' || v === null) throw bad('not a JSON object');
  const c = v as Record<string, unknown>;
  if (c.magic !== CONFIG_MAGIC) throw bad('not a VMKeep repository config');
  if (typeof c.format !== 'number' || !Number.isInteger(c.format) || c.format < 1) throw bad(`invalid format ${String(c.format)}`);
  if (c.format > FORMAT_VERSION) {
    throw new UnsupportedFormatError(
      `repository format ${c.format} is newer than the supported ${FORMAT_VERSION}: upgrade VMKeep to use this repository`,
    );
  }
  if (typeof c.id !== 'string' || typeof c.createdAt !== 'string') throw bad('missing id or createdAt');
  if (!checkChunkSize(c.chunkSize)) throw bad(`invalid chunk size ${String(c.chunkSize)}`);
  let encryption: EncryptionConfig | null = null;
  if (c.encryption !== null && c.encryption !== undefined) {
    const e = c.encryption as Record<string, unknown>;
    if (typeof e !== 'object' || e.cipher !== CIPHER) {
      throw new UnsupportedFormatError(`${where}: unsupported encryption ${JSON.stringify(c.encryption)}`);
    }
    encryption = { cipher: CIPHER };
  }
  // Encrypted repositories must use keyed ids (plain SHA-256 names would reveal content); others plain ones.
  const expectedId = encryption ? CHUNK_ID_HMAC_SHA256 : CHUNK_ID_SHA256;
  if (c.chunkId !== expectedId) throw bad(`chunk id algorithm ${String(c.chunkId)} does not fit the encryption setting`);
  const comp = c.compression as Record<string, unknown> | null | undefined;
  if (typeof comp !== 'object' || comp === null || comp.algorithm !== 'zstd' || !checkLevel(comp.level)) {
    throw bad('invalid compression settings');
  }
  return {
    magic: CONFIG_MAGIC,
    format: c.format,
    id: c.id,
    createdAt: c.createdAt,
    chunkSize: c.chunkSize,
    chunkId: expectedId,
    compression: { algorithm: 'zstd', level: comp.level },
    encryption,
  };
}
