import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { Repository } from './repository';

describe('subkeySealer', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-subkeys-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('derives stable keys per purpose from the master keys, and none for a plain repository', async () => {
    const where = path.join(dir, 'enc');
    const repo = await Repository.init(where, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: 'pw' });
    const a = repo.subkeySealer('file-index')!;
    const sealed = a.seal(Buffer.from('hello'), 'aad-1');
    const reopened = (await Repository.open(where, { passphrase: 'pw' })).subkeySealer('file-index')!;
    expect(reopened.open(sealed, 'aad-1')?.toString()).toBe('hello');
    expect(reopened.open(sealed, 'aad-2')).toBeUndefined();
    expect(reopened.mac(Buffer.from('x')).equals(a.mac(Buffer.from('x')))).toBe(true);
    const other = repo.subkeySealer('other-purpose')!;
    expect(other.open(sealed, 'aad-1')).toBeUndefined();
    expect(other.mac(Buffer.from('x')).equals(a.mac(Buffer.from('x')))).toBe(false);
    expect(() => repo.subkeySealer('../bad')).toThrow(RangeError);
    expect([String(a), JSON.stringify(a), inspect(a)]).toEqual(['[subkeys file-index]', '"[subkeys file-index]"', '[subkeys file-index]']);

    const plain = await Repository.init(path.join(dir, 'plain'));
    expect(plain.subkeySealer('file-index')).toBeUndefined();
  });
});
