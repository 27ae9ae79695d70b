import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FsChunkStore } from './chunk-store';
import { ChunkWorkerPool, inlineChunkCodec } from './chunk-workers';
import { ChunkIdScheme, checkBlobCrc, compressChunk, computeChunkId, decodeBlob, encodeBlob, encodeChunkParts } from './codec';
import { StorageChunkStore } from './storage-chunk-store';
import { FsStorage } from './storage';
import { tempDir } from './testing/test-disks';

const hmac: ChunkIdScheme = { algorithm: 'hmac-sha256', key: randomBytes(32) };
const sha: ChunkIdScheme = { algorithm: 'sha256' };
const key = randomBytes(32);
const text = Buffer.from('a chunk of text that compresses well\n'.repeat(30_000));
/** Compressible, incompressible and empty chunks: every payload kind of the blob layout. */
const chunks = [text, randomBytes(200_000), Buffer.alloc(0)];

/** Each part spans its whole ArrayBuffer: transferring it moves exactly these bytes and leaves nothing behind. */
const ownsItsBuffer = (b: Buffer) => b.byteOffset === 0 && b.buffer.byteLength === b.length;

describe('blobs in parts (encodeChunkParts, ChunkCodec.encodeParts)', () => {
  it('a sealed blob comes as header ‖ nonce, ciphertext and tag; joined it is a valid blob with a valid CRC32', () => {
    for (const data of chunks) {
      const id = computeChunkId(hmac, data);
      const parts = encodeChunkParts(data, 3, { key, id });
      expect(parts).toHaveLength(3);
      expect(parts.every(ownsItsBuffer)).toBe(true);
      const blob = Buffer.concat(parts);
      expect(() => checkBlobCrc(id, blob)).not.toThrow();
      expect(decodeBlob(id, blob, hmac, key).equals(data)).toBe(true);
    }
  });

  it('an unsealed blob is one buffer, byte for byte what encodeBlob makes', () => {
    for (const data of chunks) {
      const parts = encodeChunkParts(data, 3);
      expect(parts).toHaveLength(1);
      expect(ownsItsBuffer(parts[0])).toBe(true);
      expect(parts[0].equals(encodeBlob(data.length, compressChunk(data, 3)))).toBe(true);
      expect(decodeBlob(computeChunkId(sha, data), parts[0], sha).equals(data)).toBe(true);
    }
  });

  describe('on the worker pool', () => {
    const pool = new ChunkWorkerPool(2);
    afterAll(() => pool.close());

    it('returns the parts by transfer, each a buffer of its own; encode() returns the blob joined by the worker', async () => {
      for (const data of chunks) {
        const id = computeChunkId(hmac, data);
        const parts = await pool.encodeParts(Buffer.from(data), 3, { key, id });
        expect(parts.length).toBe(3);
        expect(parts.every(ownsItsBuffer)).toBe(true);
        expect(decodeBlob(id, Buffer.concat(parts), hmac, key).equals(data)).toBe(true);
        // encode(): joined by the worker, one buffer of its own.
        const whole = await pool.encode(Buffer.from(data), 3, { key, id });
        expect(ownsItsBuffer(whole)).toBe(true);
        expect(decodeBlob(id, whole, hmac, key).equals(data)).toBe(true);
      }
      const plain = await pool.encodeParts(Buffer.from(text), 3);
      expect(plain).toEqual(await inlineChunkCodec.encodeParts(Buffer.from(text), 3));
    });
  });

  describe('stored from parts', () => {
    let tmp: ReturnType<typeof tempDir>;
    beforeEach(() => {
      tmp = tempDir('encode-parts');
    });
    afterEach(() => tmp.cleanup());

    const parts = () => {
      const id = computeChunkId(hmac, text);
      return { id, parts: encodeChunkParts(text, 3, { key, id }) };
    };

    it('FsChunkStore writes the parts as one file, the joined blob', async () => {
      const dir = path.join(tmp.dir, 'chunks');
      await fs.mkdir(dir);
      const store = new FsChunkStore(dir);
      const { id, parts: blob } = parts();
      expect(await store.insert(id, blob)).toEqual({ existed: false });
      await store.flush();
      expect((await fs.readFile(store.pathOf(id))).equals(Buffer.concat(blob))).toBe(true);
      expect(decodeBlob(id, await store.get(id), hmac, key).equals(text)).toBe(true);
      expect(await store.insert(id, blob)).toEqual({ existed: true });
    });

    it('StorageChunkStore puts the joined blob as one object', async () => {
      const store = new StorageChunkStore(new FsStorage(tmp.dir));
      const { id, parts: blob } = parts();
      expect(await store.insert(id, blob)).toEqual({ existed: false });
      expect((await store.get(id)).equals(Buffer.concat(blob))).toBe(true);
      expect(await store.insert(id, blob)).toEqual({ existed: true });
    });
  });
});
