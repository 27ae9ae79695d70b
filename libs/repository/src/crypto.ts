/**
 * Encryption of a repository: master keys, their passphrase wrap (scrypt + AES-256-GCM) and the sealing of
 * values with AES-256-GCM. Keys are held by RepositoryKeys, which never prints them.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { AAD_KEY_WRAP, CIPHER, GCM_NONCE_BYTES, GCM_TAG_BYTES, KEY_BYTES, SEAL_OVERHEAD } from './constants';
import { InvalidOptionError, RepositoryFormatError, WrongPassphraseError } from './errors';

/** scrypt cost parameters (stored in the key file). */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** Default KDF cost: 128 MiB of memory per derivation (N = 2^17, r = 8), a fraction of a second. */
export const KDF_STANDARD: ScryptParams = { N: 2 ** 17, r: 8, p: 1 };
/** Cheap KDF cost for tests only (1 MiB): trivially brute-forced, never for real data. */
export const KDF_INSECURE_FOR_TESTS: ScryptParams = { N: 2 ** 10, r: 8, p: 1 };
/** KDF cost names accepted by init and changePassphrase. */
export type KdfStrength = 'standard' | 'insecure-fast-for-tests';

/** Upper bounds when reading a key file, so a hostile one cannot demand absurd memory or time. */
const MAX_LOG2_N = 22;
const MAX_R = 32;
const MAX_P = 16;
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024;

const scryptMemory = ({ N, r, p }: ScryptParams) => 128 * N * r + 128 * r * p + 1024 * 1024;

export function kdfParams(strength: KdfStrength = 'standard'): ScryptParams {
  if (strength === 'standard') return { ...KDF_STANDARD };
  if (strength === 'insecure-fast-for-tests') return { ...KDF_INSECURE_FOR_TESTS };
  throw new InvalidOptionError(`unknown KDF strength ${JSON.stringify(strength)}`);
}

function checkScrypt(v: Record<string, unknown>, where: string): ScryptParams {
  const { N, r, p } = v;
  const int = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 1;
  if (!int(N) || !int(r) || !int(p) || N < 2 || (N & (N - 1)) !== 0 || N > 2 ** MAX_LOG2_N || r > MAX_R || p > MAX_P) {
    throw new RepositoryFormatError(where, 'invalid scrypt parameters');
  }
  if (scryptMemory({ N, r, p }) > MAX_SCRYPT_MEMORY) throw new RepositoryFormatError(where, 'scrypt parameters need too much memory');
  return { N, r, p };
}

/** Key material: printing, string conversion and JSON show a placeholder, never the bytes. */
export abstract class KeyMaterial {
  toJSON(): string {
    return '[repository keys]';
  }

  toString(): string {
    return '[repository keys]';
  }

  [inspect.custom](): string {
    return '[repository keys]';
  }
}

/** The repository's master keys: one for AES-256-GCM, one for the chunk-id HMAC. Never printed. */
export class RepositoryKeys extends KeyMaterial {
  readonly #encKey: Buffer;
  readonly #idKey: Buffer;

  constructor(encKey: Buffer, idKey: Buffer) {
    super();
    if (encKey.length !== KEY_BYTES || idKey.length !== KEY_BYTES) throw new RangeError('master keys must be 32 bytes each');
    // Own, exact-size buffers (Buffer.alloc never uses the shared pool), so posting them to worker threads
    // copies 32 bytes and nothing next to them.
    this.#encKey = Buffer.alloc(KEY_BYTES);
    encKey.copy(this.#encKey);
    this.#idKey = Buffer.alloc(KEY_BYTES);
    idKey.copy(this.#idKey);
  }

  static generate(): RepositoryKeys {
    return new RepositoryKeys(randomBytes(KEY_BYTES), randomBytes(KEY_BYTES));
  }

  get encKey(): Buffer {
    return this.#encKey;
  }

  get idKey(): Buffer {
    return this.#idKey;
  }

  equals(other: RepositoryKeys): boolean {
    return timingSafeEqual(this.#encKey, other.#encKey) && timingSafeEqual(this.#idKey, other.#idKey);
  }
}

/** AES-256-GCM with a fresh random nonce: the three parts of a sealed value, to lay out without extra copies. */
export function sealParts(key: Uint8Array, plain: Uint8Array, aad: Uint8Array): { nonce: Buffer; body: Buffer; tag: Buffer } {
  const nonce = randomBytes(GCM_NONCE_BYTES);
  const cipher = createCipheriv(CIPHER, key, nonce, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const body = cipher.update(plain);
  cipher.final();
  return { nonce, body, tag: cipher.getAuthTag() };
}

/** AES-256-GCM: returns nonce ‖ ciphertext ‖ tag. */
export function seal(key: Uint8Array, plain: Uint8Array, aad: Uint8Array): Buffer {
  const { nonce, body, tag } = sealParts(key, plain, aad);
  return Buffer.concat([nonce, body, tag]);
}

/** Opens a value made by seal(); returns undefined when it is too short or fails authentication. */
export function unseal(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | undefined {
  if (sealed.length < SEAL_OVERHEAD) return undefined;
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const nonce = buf.subarray(0, GCM_NONCE_BYTES);
  const tag = buf.subarray(buf.length - GCM_TAG_BYTES);
  const decipher = createDecipheriv(CIPHER, key, nonce, { authTagLength: GCM_TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const plain = decipher.update(buf.subarray(GCM_NONCE_BYTES, buf.length - GCM_TAG_BYTES));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plain;
}

/** The key file (`key.json`): KDF parameters and the wrapped master keys. Nothing in it is secret on its own. */
export interface KeyFile {
  format: 1;
  kdf: { algorithm: 'scrypt'; salt: string } & ScryptParams;
  wrapped: { cipher: typeof CIPHER; data: string };
  createdAt: string;
}

function checkPassphrase(passphrase: unknown): asserts passphrase is string {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new InvalidOptionError('the passphrase must be a non-empty string');
  }
}

function deriveKek(passphrase: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize('NFC'), salt, KEY_BYTES, { ...params, maxmem: scryptMemory(params) }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

const wrapAad = (repoId: string) => Buffer.from(AAD_KEY_WRAP + repoId, 'utf8');

/** Wraps the master keys with a passphrase; `repoId` binds the key file to its repository. */
export async function wrapKeys(keys: RepositoryKeys, passphrase: string, repoId: string, params: ScryptParams): Promise<KeyFile> {
  checkPassphrase(passphrase);
  const salt = randomBytes(16);
  const kek = await deriveKek(passphrase, salt, params);
  const data = seal(kek, Buffer.concat([keys.encKey, keys.idKey]), wrapAad(repoId));
  kek.fill(0);
  return {
    format: 1,
    kdf: { algorithm: 'scrypt', ...params, salt: salt.toString('base64') },
    wrapped: { cipher: CIPHER, data: data.toString('base64') },
    createdAt: new Date().toISOString(),
  };
}

/** Parses a key file's text (checks every field, bounds the KDF cost). */
export function parseKeyFile(text: string, where: string): KeyFile {
  const bad = (reason: string) => new RepositoryFormatError(where, reason);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('not valid JSON');
  }
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!obj(v) || v.format !== 1 || !obj(v.kdf) || !obj(v.wrapped)) throw bad('not a version 1 key file');
  const { kdf, wrapped } = v;
  if (kdf.algorithm !== 'scrypt' || typeof kdf.salt !== 'string') throw bad('unsupported KDF');
  const params = checkScrypt(kdf, where);
  if (wrapped.cipher !== CIPHER || typeof wrapped.data !== 'string') throw bad('unsupported key wrap');
  if (Buffer.from(wrapped.data, 'base64').length !== SEAL_OVERHEAD + 2 * KEY_BYTES) throw bad('wrapped key has the wrong length');
  return {
    format: 1,
    kdf: { algorithm: 'scrypt', ...params, salt: kdf.salt },
    wrapped: { cipher: CIPHER, data: wrapped.data },
    createdAt: typeof v.createdAt === 'string' ? v.createdAt : '',
  };
}

/** Unwraps the master keys; a wrong passphrase (or a tampered key file) is a WrongPassphraseError. */
export async function unwrapKeys(file: KeyFile, passphrase: string, repoId: string): Promise<RepositoryKeys> {
  checkPassphrase(passphrase);
  const kek = await deriveKek(passphrase, Buffer.from(file.kdf.salt, 'base64'), file.kdf);
  const plain = unseal(kek, Buffer.from(file.wrapped.data, 'base64'), wrapAad(repoId));
  kek.fill(0);
  if (!plain) throw new WrongPassphraseError();
  const keys = new RepositoryKeys(plain.subarray(0, KEY_BYTES), plain.subarray(KEY_BYTES));
  plain.fill(0);
  return keys;
}
