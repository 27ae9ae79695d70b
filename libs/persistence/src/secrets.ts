import { createCipheriv, createDecipheriv, createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AppConfig } from '@vmkeep/config';

/** A secret could not be sealed, opened, hashed or loaded. Messages never contain secret material. */
export class SecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretError';
  }
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const SEAL_VERSION = 'v1';

/**
 * Seals short secrets (host passwords) with the appliance key: AES-256-GCM, a random 96-bit IV per seal.
 * Sealed form: "v1:" + base64(iv | tag | ciphertext).
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
      throw new SecretError(`secret key must be ${KEY_BYTES} bytes`);
    }
    this.#key = Buffer.from(key);
  }

  seal(plaintext: string): string {
    if (typeof plaintext !== 'string') throw new SecretError('only strings can be sealed');
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `${SEAL_VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')}`;
  }

  open(sealed: string): string {
    if (typeof sealed !== 'string') throw new SecretError('sealed secret must be a string');
    const colon = sealed.indexOf(':');
    const version = colon < 0 ? '' : sealed.slice(0, colon);
    if (version !== SEAL_VERSION) throw new SecretError('sealed secret has an unknown format (expected "v1:")');
    const raw = Buffer.from(sealed.slice(colon + 1), 'base64');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new SecretError('sealed secret is truncated');
    const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, IV_BYTES));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretError('sealed secret cannot be opened: wrong secret key or tampered data');
    }
  }
}

/**
 * The appliance key: config.secretKey when set, else the key file (created with 32 random bytes, mode 0600,
 * when it does not exist yet).
 */
export function loadOrCreateSecretKey(config: Pick<AppConfig, 'secretKey' | 'secretKeyFile'>): Buffer {
  if (config.secretKey) {
    if (config.secretKey.length !== KEY_BYTES) throw new SecretError(`secret key must be ${KEY_BYTES} bytes`);
    return config.secretKey;
  }
  const file = config.secretKeyFile;
  try {
    return checkKeyFile(fs.readFileSync(file), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = randomBytes(KEY_BYTES);
  try {
    // 'wx' fails if another process created the file meanwhile: then that process's key wins.
    fs.writeFileSync(file, key, { mode: 0o600, flag: 'wx' });
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return checkKeyFile(fs.readFileSync(file), file);
  }
}

function checkKeyFile(content: Buffer, file: string): Buffer {
  if (content.length !== KEY_BYTES) {
    throw new SecretError(`secret key file ${file} must hold exactly ${KEY_BYTES} bytes (found ${content.length})`);
  }
  return content;
}

/** scrypt cost parameters: N = 2^15, r = 8, p = 1 (about 32 MiB and tens of ms per hash). */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}
const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };
const HASH_BYTES = 32;
const SALT_BYTES = 16;

function scryptAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const maxmem = 128 * params.N * params.r * params.p * 2 + 1024 * 1024;
    scrypt(password, salt, HASH_BYTES, { ...params, maxmem }, (err, derived) => (err ? reject(err) : resolve(derived)));
  });
}

/** Hashes a password as "scrypt$N$r$p$<salt b64>$<hash b64>"; params are for tests that want cheaper costs. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  if (typeof password !== 'string' || password.length === 0) throw new SecretError('password must not be empty');
  const salt = randomBytes(SALT_BYTES);
  const hash = await scryptAsync(password, salt, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

const HASH_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

/** True when `password` matches `stored` (constant-time compare); a malformed hash is an error, not false. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = HASH_FORMAT.exec(stored ?? '');
  if (!m) throw new SecretError('password hash has an unknown format');
  const params: ScryptParams = { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const powerOfTwo = params.N >= 2 && (params.N & (params.N - 1)) === 0;
  if (!powerOfTwo || params.N > 2 ** 20 || params.r < 1 || params.r > 32 || params.p < 1 || params.p > 16) {
    throw new SecretError('password hash has invalid scrypt parameters');
  }
  const expected = Buffer.from(m[5], 'base64');
  if (expected.length !== HASH_BYTES) throw new SecretError('password hash has an invalid length');
  if (typeof password !== 'string') return false;
  const actual = await scryptAsync(password, Buffer.from(m[4], 'base64'), params);
  return timingSafeEqual(actual, expected);
}

export const TOKEN_PREFIX = 'vmk_';

/** A new bearer token: "vmk_" + 32 random bytes, base64url. Only its hash is stored. */
export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** SHA-256 of a token, hex: what the database stores and looks up. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
