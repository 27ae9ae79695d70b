import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { InvalidOptionError } from './errors';
import { Repository } from './repository';

describe('unlockedKeys', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-unlocked-keys-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('opens an encrypted repository without the passphrase and without running the KDF', async () => {
    const where = path.join(dir, 'enc');
    const repo = await Repository.init(where, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: 'pw' });
    const writer = repo.beginPoint();
    const data = randomBytes(3 * 1024 * 1024 + 17);
    await writer.writeDisk('disk-1', { size: data.length, read: async (o, n) => data.subarray(o, o + n), extents: async () => [{ offset: 0, length: data.length }], close: async () => undefined });
    const { id } = await writer.commit({ vm: 'secret' });

    const unlocked = repo.unlockedKeys()!;
    // Never printed: not by String, JSON or inspect.
    expect([String(unlocked), JSON.stringify(unlocked), inspect(unlocked)]).toEqual(['[repository keys]', '"[repository keys]"', '[repository keys]']);
    // What a worker thread receives: the structured clone, a plain object.
    const cloned = structuredClone(unlocked);
    expect(Object.keys(cloned).sort()).toEqual(['keys', 'repositoryId']);
    expect(cloned.keys.buffer.byteLength).toBe(64); // the 64 key bytes and nothing next to them

    // The module object crypto.ts calls scrypt through (CommonJS).
    const scrypt = jest.spyOn(jest.requireActual<typeof import('node:crypto')>('node:crypto'), 'scrypt');
    try {
      const reopened = await Repository.open(where, { unlockedKeys: cloned });
      expect(reopened.encrypted).toBe(true);
      expect((await reopened.listPoints())[0].meta).toEqual({ vm: 'secret' });
      const disk = await reopened.openDisk(id, 'disk-1');
      expect((await disk.read(0, data.length)).equals(data)).toBe(true);
      await disk.close();
      expect(reopened.subkeySealer('file-index')!.mac(Buffer.from('x')).equals(repo.subkeySealer('file-index')!.mac(Buffer.from('x')))).toBe(true);
      expect(scrypt).not.toHaveBeenCalled();
      // The passphrase path does run it (the spy sees the derivation).
      await Repository.open(where, { passphrase: 'pw' });
      expect(scrypt).toHaveBeenCalledTimes(1);
    } finally {
      scrypt.mockRestore();
    }
    // A fresh copy each call: zeroing one handed out leaves the repository working.
    repo.unlockedKeys()!.keys.fill(0);
    expect((await repo.listPoints()).length).toBe(1);
  });

  it('refuses keys of another repository or of the wrong length; a plain repository has none', async () => {
    const a = await Repository.init(path.join(dir, 'a'), { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: 'pw' });
    await Repository.init(path.join(dir, 'b'), { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: 'pw' });
    const keys = a.unlockedKeys()!;
    await expect(Repository.open(path.join(dir, 'b'), { unlockedKeys: keys })).rejects.toThrow(InvalidOptionError);
    await expect(Repository.open(path.join(dir, 'b'), { unlockedKeys: keys })).rejects.toThrow(/belong to repository/);
    await expect(Repository.open(path.join(dir, 'a'), { unlockedKeys: { repositoryId: keys.repositoryId, keys: new Uint8Array(32) } })).rejects.toThrow(
      /must be 64 bytes/,
    );
    const plain = await Repository.init(path.join(dir, 'plain'));
    expect(plain.unlockedKeys()).toBeUndefined();
  });
});
