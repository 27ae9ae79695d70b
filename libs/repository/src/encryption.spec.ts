import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { closeSharedChunkWorkers } from './chunk-workers';
import { BLOB_OFF_ENCRYPTION, CHUNKS_DIR, ENCRYPTION_AES_256_GCM, KEY_FILE, MANIFEST_FILE, POINTS_DIR } from './constants';
import { KDF_STANDARD, RepositoryKeys, kdfParams, parseKeyFile, unwrapKeys, wrapKeys } from './crypto';
import {
  CorruptChunkError,
  DecryptionError,
  IndexFormatError,
  InvalidOptionError,
  PassphraseRequiredError,
  WrongPassphraseError,
} from './errors';
import { Repository } from './repository';
import { filesUnder } from './testing/repo-files';
import { BufferDisk, patterned, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;
const PASS = 'correct horse battery staple';

describe('encrypted repository', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;

  beforeEach(() => {
    tmp = tempDir('enc');
    dir = path.join(tmp.dir, 'repo');
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  const init = () => Repository.init(dir, { chunkSize: CS, encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASS });

  async function backup(repo: Repository, data: Buffer, meta: Record<string, unknown>) {
    const writer = repo.beginPoint();
    await writer.writeDisk('scsi0-0', new BufferDisk(data));
    return writer.commit(meta);
  }

  it('stores nothing readable: keyed chunk names, sealed blobs, indexes and manifests; restores byte-exact', async () => {
    const repo = await init();
    expect(repo.encrypted).toBe(true);
    expect(repo.config).toMatchObject({ chunkId: 'hmac-sha256', encryption: { cipher: 'aes-256-gcm' } });
    const data = patterned('trtzr', CS, 1000);
    const manifest = await backup(repo, data, { vm: 'secret-vm-name' });

    const reopened = await Repository.open(dir, { passphrase: PASS });
    const disk = await reopened.openDisk(manifest.id, 'scsi0-0');
    expect((await readAll(disk)).equals(data)).toBe(true);
    expect((await reopened.listPoints())[0].meta).toEqual({ vm: 'secret-vm-name' });

    // Chunk names are not the SHA-256 of any chunk, and every blob is marked and sealed.
    const plainIds = new Set<string>();
    for (let off = 0; off < data.length; off += CS) {
      plainIds.add(createHash('sha256').update(data.subarray(off, off + CS)).digest('hex'));
    }
    const chunks = await filesUnder(path.join(dir, CHUNKS_DIR));
    expect(chunks.length).toBe(5); // t r t r and the tail; the zero chunk is never stored
    for (const file of chunks) {
      expect(plainIds.has(path.basename(file))).toBe(false);
      const blob = await fs.readFile(file);
      expect(blob[BLOB_OFF_ENCRYPTION]).toBe(ENCRYPTION_AES_256_GCM);
      expect(blob.includes(Buffer.from('compressible text'))).toBe(false);
    }
    // The manifest reveals neither the VM name nor the disk size.
    const manifestText = await fs.readFile(path.join(dir, POINTS_DIR, manifest.id, MANIFEST_FILE), 'utf8');
    expect(manifestText).not.toContain('secret-vm-name');
    expect(manifestText).not.toContain(String(data.length));
    // The index's id table is not the plaintext ids.
    const index = await fs.readFile(path.join(dir, POINTS_DIR, manifest.id, 'scsi0-0.fidx'));
    for (const file of chunks) expect(index.includes(Buffer.from(path.basename(file), 'hex'))).toBe(false);
  });

  it('requires the right passphrase and never shows the keys', async () => {
    await init();
    await expect(Repository.open(dir)).rejects.toBeInstanceOf(PassphraseRequiredError);
    await expect(Repository.open(dir, { passphrase: 'wrong' })).rejects.toBeInstanceOf(WrongPassphraseError);
    await expect(Repository.open(dir, { passphrase: 'wrong' })).rejects.toThrow(/wrong passphrase/);
    await expect(Repository.init(path.join(tmp.dir, 'other'), { encrypt: true })).rejects.toBeInstanceOf(PassphraseRequiredError);
    await expect(
      Repository.init(path.join(tmp.dir, 'other'), { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: '' }),
    ).rejects.toBeInstanceOf(InvalidOptionError);

    const keys = RepositoryKeys.generate();
    const hex = keys.encKey.toString('hex');
    for (const shown of [inspect(keys), JSON.stringify({ keys }), String(keys), inspect(await Repository.open(dir, { passphrase: PASS }))]) {
      expect(shown).not.toContain(hex);
      expect(shown).not.toMatch(/[0-9a-f]{64}/);
    }
  });

  it('changes the passphrase by rewriting only the key file', async () => {
    const repo = await init();
    const manifest = await backup(repo, patterned('rr', CS), { vm: 'a' });
    const before = new Map<string, Buffer>();
    for (const f of await filesUnder(dir)) before.set(f, await fs.readFile(f));

    await expect(repo.changePassphrase('wrong', 'new one', { kdf: 'insecure-fast-for-tests' })).rejects.toBeInstanceOf(WrongPassphraseError);
    await repo.changePassphrase(PASS, 'new one', { kdf: 'insecure-fast-for-tests' });

    const after = await filesUnder(dir);
    expect(after.sort()).toEqual([...before.keys()].sort());
    for (const f of after) {
      const same = (await fs.readFile(f)).equals(before.get(f) as Buffer);
      expect([path.basename(f), same]).toEqual([path.basename(f), path.basename(f) !== KEY_FILE]);
    }
    await expect(Repository.open(dir, { passphrase: PASS })).rejects.toBeInstanceOf(WrongPassphraseError);
    const reopened = await Repository.open(dir, { passphrase: 'new one' });
    expect((await readAll(await reopened.openDisk(manifest.id, 'scsi0-0'))).length).toBe(2 * CS);
  });

  it('uses a memory-hard standard KDF whose parameters live in the key file', async () => {
    expect(kdfParams()).toEqual(KDF_STANDARD);
    expect(KDF_STANDARD.N * KDF_STANDARD.r * 128).toBeGreaterThanOrEqual(64 * 1024 * 1024);
    const keys = RepositoryKeys.generate();
    const file = await wrapKeys(keys, PASS, 'repo-id', KDF_STANDARD);
    const parsed = parseKeyFile(JSON.stringify(file), 'key');
    expect(parsed.kdf).toMatchObject({ algorithm: 'scrypt', N: 2 ** 17, r: 8, p: 1 });
    expect((await unwrapKeys(parsed, PASS, 'repo-id')).equals(keys)).toBe(true);
    // Bound to its repository: the same file does not open another repository's keys.
    await expect(unwrapKeys(parsed, PASS, 'other-repo')).rejects.toBeInstanceOf(WrongPassphraseError);
    // A hostile key file cannot demand absurd memory.
    expect(() => parseKeyFile(JSON.stringify({ ...file, kdf: { ...file.kdf, N: 2 ** 30 } }), 'key')).toThrow(/scrypt/);
  });

  it('detects tampering with a sealed manifest, a moved index and a blob', async () => {
    const repo = await init();
    const a = await backup(repo, patterned('rt', CS), { vm: 'a' });
    const b = await backup(repo, patterned('tr', CS), { vm: 'b' });
    const pointDir = (id: string) => path.join(dir, POINTS_DIR, id);

    // Index of b copied over a's: authenticated with its place, so refused.
    await fs.copyFile(path.join(pointDir(b.id), 'scsi0-0.fidx'), path.join(pointDir(a.id), 'scsi0-0.fidx'));
    await expect(repo.openDisk(a.id, 'scsi0-0')).rejects.toBeInstanceOf(IndexFormatError);

    // A flipped bit in the sealed manifest.
    const mf = path.join(pointDir(b.id), MANIFEST_FILE);
    const envelope = JSON.parse(await fs.readFile(mf, 'utf8'));
    const sealed = Buffer.from(envelope.data, 'base64');
    sealed[20] ^= 1;
    await fs.writeFile(mf, JSON.stringify({ ...envelope, data: sealed.toString('base64') }));
    await expect(repo.readManifest(b.id)).rejects.toBeInstanceOf(DecryptionError);

    // A blob with a flipped ciphertext byte whose CRC was recomputed still fails authentication.
    const chunk = (await filesUnder(path.join(dir, CHUNKS_DIR)))[0];
    const blob = await fs.readFile(chunk);
    blob[blob.length - 20] ^= 1;
    const { crc32 } = await import('node:zlib');
    blob.writeUInt32LE(crc32(blob.subarray(24)), 16);
    await fs.writeFile(chunk, blob);
    await expect(repo.loadChunk(Buffer.from(path.basename(chunk), 'hex'))).rejects.toThrow(CorruptChunkError);
    await expect(repo.loadChunk(Buffer.from(path.basename(chunk), 'hex'))).rejects.toThrow(/authentication failed/);
  });
});
