import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ChunkWorkerPool, inlineChunkCodec } from './chunk-workers';
import { ChunkIdScheme, checkBlobCrc, compressChunk, computeChunkId, decodeBlob, encodeBlob } from './codec';
import { BLOB_HEADER_SIZE, COMPRESSION_NONE, COMPRESSION_ZSTD } from './constants';
import { CorruptChunkError, MissingChunkError } from './errors';

const sha: ChunkIdScheme = { algorithm: 'sha256' };
const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(6000));

function blobOf(data: Buffer) {
  const id = computeChunkId(sha, data);
  return { id, blob: encodeBlob(data.length, compressChunk(data, 3)) };
}

describe('chunk codec', () => {
  it('compresses what pays and stores the rest as is', () => {
    expect(compressChunk(text, 3).compression).toBe(COMPRESSION_ZSTD);
    expect(compressChunk(text, 3).payload.length).toBeLessThan(text.length / 10);
    const random = randomBytes(100_000);
    expect(compressChunk(random, 3)).toEqual({ compression: COMPRESSION_NONE, payload: random });
    expect(compressChunk(random, 3).payload.buffer).toBe(random.buffer); // a view, not a copy
  });

  it('round-trips compressed and stored blobs', () => {
    for (const data of [text, randomBytes(70_000), Buffer.alloc(0)]) {
      const { id, blob } = blobOf(data);
      expect(decodeBlob(id, blob, sha).equals(data)).toBe(true);
    }
  });

  it('ids: SHA-256 of the plaintext, or keyed HMAC for encrypted repositories', () => {
    const key = randomBytes(32);
    const plain = computeChunkId(sha, text);
    const keyed = computeChunkId({ algorithm: 'hmac-sha256', key }, text);
    expect(computeChunkId(sha, Buffer.from('abc')).toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    expect(plain).toHaveLength(32);
    expect(keyed).toHaveLength(32);
    expect(keyed.equals(plain)).toBe(false);
    expect(computeChunkId({ algorithm: 'hmac-sha256', key }, text).equals(keyed)).toBe(true);
  });

  it.each([
    ['bad magic', (b: Buffer) => void (b[0] ^= 1), /bad magic/],
    ['unknown version', (b: Buffer) => void (b[4] = 9), /unknown blob version 9/],
    ['encrypted blob', (b: Buffer) => void (b[6] = 1), /unsupported encryption/],
    ['unknown compression', (b: Buffer) => void (b[5] = 7), /unknown compression 7/],
    ['payload bit flip', (b: Buffer) => void (b[BLOB_HEADER_SIZE + 3] ^= 0x10), /CRC32 mismatch/],
    ['absurd plaintext length', (b: Buffer) => void b.writeUInt32LE(0xffffffff, 8), /exceeds the maximum/],
    ['plaintext length too small', (b: Buffer) => void b.writeUInt32LE(text.length - 1, 8), /zstd: .*too small/],
    ['plaintext length too large', (b: Buffer) => void b.writeUInt32LE(text.length + 1, 8), /decompressed to \d+ bytes, expected/],
  ])('detects %s', (_name, damage, message) => {
    const { id, blob } = blobOf(text);
    damage(blob);
    expect(() => decodeBlob(id, blob, sha)).toThrow(CorruptChunkError);
    expect(() => decodeBlob(id, blob, sha)).toThrow(message);
  });

  it('reads a blob whose only damage is its CRC field (the id proves the content); the verify scrub names it', () => {
    const { id, blob } = blobOf(text);
    blob[16] ^= 0x01;
    expect(decodeBlob(id, blob, sha).equals(text)).toBe(true);
    expect(() => checkBlobCrc(id, blob)).toThrow(/CRC32 mismatch/);
    blob[16] ^= 0x01;
    expect(() => checkBlobCrc(id, blob)).not.toThrow();
  });

  it('detects truncation and a blob stored under the wrong id', () => {
    const { id, blob } = blobOf(text);
    expect(() => decodeBlob(id, blob.subarray(0, blob.length - 1), sha)).toThrow(/payload length/);
    expect(() => decodeBlob(id, blob.subarray(0, 10), sha)).toThrow(/shorter than its header/);
    const other = computeChunkId(sha, Buffer.from('other'));
    expect(() => decodeBlob(other, blob, sha)).toThrow(new RegExp(`chunk ${other.toString('hex')} is corrupt`));
  });
});

describe('ChunkWorkerPool', () => {
  const pool = new ChunkWorkerPool(2);
  afterAll(() => pool.close());

  it('computes the same ids and payloads as the inline codec, concurrently', async () => {
    const inputs = [text, randomBytes(300_000), Buffer.alloc(1000, 1), text.subarray(7)];
    const viaPool = await Promise.all(
      inputs.map(async (d) => {
        const hashed = await pool.hash(sha, d);
        expect(hashed.data.equals(d)).toBe(true);
        // The pool's own buffer goes back to a worker without a copy; the caller's buffers stay intact.
        return [hashed.id, await pool.compress(hashed.data, 3)] as const;
      }),
    );
    for (const [i, d] of inputs.entries()) {
      expect(viaPool[i][0].equals((await inlineChunkCodec.hash(sha, d)).id)).toBe(true);
      expect(viaPool[i][1]).toEqual(await inlineChunkCodec.compress(d, 3));
    }
  });

  it('reports worker-side failures as errors and keeps working', async () => {
    const broken = { algorithm: 'hmac-sha256', key: undefined } as unknown as ChunkIdScheme;
    await expect(pool.hash(broken, text)).rejects.toThrow(/chunk worker/);
    expect((await pool.hash(sha, text)).id).toEqual(computeChunkId(sha, text));
  });

  it('decodes blobs on the workers: plain ones checked against their id, encrypted ones by their GCM tag', async () => {
    const key = randomBytes(32);
    const hmac: ChunkIdScheme = { algorithm: 'hmac-sha256', key: randomBytes(32) };
    for (const data of [text, randomBytes(70_000), Buffer.alloc(0)]) {
      const plain = blobOf(data);
      expect((await pool.decode(plain.id, plain.blob, sha)).equals(data)).toBe(true);
      const id = computeChunkId(hmac, data);
      const sealed = await pool.encode(Buffer.from(data), 3, { key, id });
      expect((await pool.decode(id, Buffer.from(sealed), hmac, key)).equals(data)).toBe(true);
      // Sealed for one id, presented under another: the tag covers the id, so this fails without any re-hash.
      const other = computeChunkId(hmac, Buffer.from('other'));
      await expect(pool.decode(other, Buffer.from(sealed), hmac, key)).rejects.toThrow(/authentication failed/);
    }
  });

  it('a flipped byte fails loudly on the workers too, as a CorruptChunkError with its reason', async () => {
    const { id, blob } = blobOf(text);
    blob[BLOB_HEADER_SIZE + 5] ^= 0x01;
    const err = await pool.decode(id, blob, sha).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect(err).toMatchObject({ chunkId: id.toString('hex'), reason: 'CRC32 mismatch' });
    // Unencrypted, a consistent blob of other content (CRC recomputed by whoever made it) fails the id check.
    const forged = blobOf(Buffer.from('forged content'));
    await expect(pool.decode(id, forged.blob, sha)).rejects.toThrow(/content does not match the chunk id/);
  });

  it('decodes a blob file the worker reads itself; a missing file is MissingChunkError', async () => {
    const { id, blob } = blobOf(text);
    const dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-codec-'));
    try {
      writeFileSync(path.join(dir, 'blob'), blob);
      expect((await pool.decodeFile(id, path.join(dir, 'blob'), sha)).equals(text)).toBe(true);
      await expect(pool.decodeFile(id, path.join(dir, 'gone'), sha)).rejects.toBeInstanceOf(MissingChunkError);
      await expect(inlineChunkCodec.decodeFile(id, path.join(dir, 'gone'), sha)).rejects.toBeInstanceOf(MissingChunkError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decodes into recycled plaintext buffers (in memory and from files) without mixing up their old content', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-codec-'));
    try {
      const chunks = [randomBytes(64 * 1024), randomBytes(64 * 1024), Buffer.from(text.subarray(0, 64 * 1024))];
      for (let round = 0; round < 3; round++) {
        for (const [i, data] of chunks.entries()) {
          const { id, blob } = blobOf(data);
          const file = path.join(dir, `c${i}`);
          writeFileSync(file, blob);
          const fromFile = await pool.decodeFile(id, file, sha);
          expect(fromFile.equals(data)).toBe(true);
          pool.recycle(fromFile); // the next decodes of this size may land in it
          const inMemory = await pool.decode(id, Buffer.from(blob), sha);
          expect(inMemory.equals(data)).toBe(true);
          pool.recycle(inMemory);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses work after close', async () => {
    const p = new ChunkWorkerPool(1);
    await p.hash(sha, text);
    await p.close();
    await expect(p.hash(sha, text)).rejects.toThrow(/closed/);
  });
});
