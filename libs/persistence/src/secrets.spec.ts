import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashPassword, hashToken, loadOrCreateSecretKey, newToken, SecretBox, SecretError, verifyPassword } from './secrets';

const CHEAP = { N: 1024, r: 8, p: 1 };

describe('SecretBox', () => {
  const key = randomBytes(32);

  it('seals to a versioned string that opens to the plaintext, with a fresh IV each time', () => {
    const box = new SecretBox(key);
    const a = box.seal('vCenter pässword');
    const b = box.seal('vCenter pässword');
    expect(a).toMatch(/^v1:[A-Za-z0-9+/]+=*$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain('pässword');
    expect(box.open(a)).toBe('vCenter pässword');
    expect(box.open(box.seal(''))).toBe('');
  });

  it('refuses a wrong key and tampered data without echoing the plaintext', () => {
    const sealed = new SecretBox(key).seal('hunter2');
    const other = new SecretBox(randomBytes(32));
    expect(() => other.open(sealed)).toThrow(SecretError);
    expect(() => other.open(sealed)).toThrow(/wrong secret key or tampered/);
    const raw = Buffer.from(sealed.slice(3), 'base64');
    raw[raw.length - 1] ^= 1;
    const tampered = `v1:${raw.toString('base64')}`;
    expect(() => new SecretBox(key).open(tampered)).toThrow(/wrong secret key or tampered/);
    try {
      other.open(sealed);
    } catch (err) {
      expect(String(err)).not.toContain('hunter2');
    }
  });

  it('rejects unknown formats, truncated input and bad keys', () => {
    const box = new SecretBox(key);
    expect(() => box.open('hunter2')).toThrow(/unknown format/);
    expect(() => box.open('v2:AAAA')).toThrow(/unknown format/);
    expect(() => box.open('v1:AAAA')).toThrow(/truncated/);
    expect(() => new SecretBox(randomBytes(16))).toThrow(/32 bytes/);
  });
});

describe('loadOrCreateSecretKey', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-key-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('prefers the configured key', () => {
    const key = randomBytes(32);
    expect(loadOrCreateSecretKey({ secretKey: key, secretKeyFile: path.join(dir, 'k') }).equals(key)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'k'))).toBe(false);
  });

  it('creates a 32-byte key file with mode 0600 in a new folder, then reads the same key back', () => {
    const file = path.join(dir, 'nested', 'secret.key');
    const created = loadOrCreateSecretKey({ secretKeyFile: file });
    expect(created).toHaveLength(32);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(loadOrCreateSecretKey({ secretKeyFile: file }).equals(created)).toBe(true);
  });

  it('refuses a key file of the wrong size', () => {
    const file = path.join(dir, 'secret.key');
    fs.writeFileSync(file, 'too short');
    expect(() => loadOrCreateSecretKey({ secretKeyFile: file })).toThrow(/exactly 32 bytes \(found 9\)/);
  });
});

describe('passwords', () => {
  it('hashes with a random salt and stores the scrypt parameters', async () => {
    const a = await hashPassword('correct horse', CHEAP);
    const b = await hashPassword('correct horse', CHEAP);
    expect(a).toMatch(/^scrypt\$1024\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse', a)).toBe(true);
    expect(await verifyPassword('correct horsE', a)).toBe(false);
    expect(await verifyPassword('', a)).toBe(false);
  });

  it('uses strong parameters by default', async () => {
    const hash = await hashPassword('pw');
    expect(hash.startsWith('scrypt$32768$8$1$')).toBe(true);
    expect(await verifyPassword('pw', hash)).toBe(true);
  });

  it('rejects empty passwords and malformed or hostile hashes', async () => {
    await expect(hashPassword('')).rejects.toThrow(SecretError);
    await expect(verifyPassword('pw', 'plaintext')).rejects.toThrow(/unknown format/);
    await expect(verifyPassword('pw', 'scrypt$3$8$1$AAAA$AAAA')).rejects.toThrow(/invalid scrypt parameters/);
    await expect(verifyPassword('pw', 'scrypt$1073741824$8$1$AAAA$AAAA')).rejects.toThrow(/invalid scrypt parameters/);
    await expect(verifyPassword('pw', 'scrypt$1024$8$1$AAAA$AAAA')).rejects.toThrow(/invalid length/);
  });
});

describe('tokens', () => {
  it('are prefixed, url-safe, random, and hashed as SHA-256 hex', () => {
    const a = newToken();
    const b = newToken();
    expect(a).toMatch(/^vmk_[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(hashToken(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashToken(a)).toBe(hashToken(a));
    expect(hashToken(a)).not.toBe(hashToken(b));
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
