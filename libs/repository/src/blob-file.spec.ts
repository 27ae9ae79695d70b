import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import * as path from 'node:path';
import { decodeBlobFile } from './blob-file';
import { ChunkIdScheme, computeChunkId, encodeChunk } from './codec';
import { BLOB_HEADER_SIZE, BLOB_OFF_COMPRESSION, BLOB_OFF_PAYLOAD_LENGTH, BLOB_OFF_PLAIN_LENGTH, COMPRESSION_NONE, MAX_CHUNK_SIZE } from './constants';
import { CorruptChunkError } from './errors';
import { tempDir } from './testing/test-disks';

const sha: ChunkIdScheme = { algorithm: 'sha256' };
const hmac: ChunkIdScheme = { algorithm: 'hmac-sha256', key: randomBytes(32) };
const encKey = randomBytes(32);
const text = Buffer.from('a line of log text that compresses well\n'.repeat(4000));
const random = randomBytes(96 * 1024);

describe('decodeBlobFile', () => {
  let tmp: ReturnType<typeof tempDir>;
  let n = 0;
  beforeAll(() => (tmp = tempDir('blob-file')));
  afterAll(() => tmp.cleanup());

  /** Writes `data`'s blob (plain, or sealed with `encrypted`) to a fresh file; returns the file and the id. */
  function stored(data: Buffer, encrypted = false, damage?: (blob: Buffer) => void) {
    const id = computeChunkId(encrypted ? hmac : sha, data);
    const blob = encodeChunk(Buffer.from(data), 3, encrypted ? { key: encKey, id } : undefined);
    damage?.(blob);
    const file = path.join(tmp.dir, `blob-${n++}`);
    writeFileSync(file, blob);
    return { id, file, blob };
  }

  it('reads a payload stored as is straight into the spare buffer it is given, and checks it against the id', () => {
    const { id, file, blob } = stored(random);
    expect(blob[BLOB_OFF_COMPRESSION]).toBe(COMPRESSION_NONE);
    const into = new Uint8Array(random.length);
    const plain = decodeBlobFile(id, file, sha, undefined, into) as Buffer;
    expect(plain.equals(random)).toBe(true);
    expect(plain.buffer).toBe(into.buffer); // no allocation, no copy
    // Without a spare (or one of another size) it gets a buffer of its own, exactly the chunk.
    const fresh = decodeBlobFile(id, file, sha, undefined, new Uint8Array(10)) as Buffer;
    expect(fresh.equals(random)).toBe(true);
    expect(fresh.byteLength).toBe(fresh.buffer.byteLength);
  });

  it('decompresses into the spare buffer, and decodes encrypted blobs (stored and compressed) by their tag', () => {
    const plain = stored(text);
    const into = new Uint8Array(text.length);
    const out = decodeBlobFile(plain.id, plain.file, sha, undefined, into) as Buffer;
    expect(out.equals(text)).toBe(true);
    expect(out.buffer).toBe(into.buffer);
    for (const data of [text, random, Buffer.alloc(0)]) {
      const sealed = stored(data, true);
      expect((decodeBlobFile(sealed.id, sealed.file, hmac, encKey) as Buffer).equals(data)).toBe(true);
      expect((decodeBlobFile(sealed.id, sealed.file, hmac, encKey, new Uint8Array(data.length)) as Buffer).equals(data)).toBe(true);
    }
    // Read twice in a row on the same thread: the scratch buffer of the first read does not leak into the second.
    const again = stored(Buffer.from('other text, other length\n'.repeat(3000)));
    expect((decodeBlobFile(again.id, again.file, sha) as Buffer).toString()).toBe('other text, other length\n'.repeat(3000));
  });

  it('gives undefined for a missing file', () => {
    expect(decodeBlobFile(randomBytes(32), path.join(tmp.dir, 'gone'), sha)).toBeUndefined();
  });

  it.each([
    ['a flipped payload byte (stored as is)', random, false, (b: Buffer) => void (b[BLOB_HEADER_SIZE + 100] ^= 1), /CRC32 mismatch/],
    ['a flipped payload byte (compressed)', text, false, (b: Buffer) => void (b[BLOB_HEADER_SIZE + 9] ^= 1), /CRC32 mismatch/],
    ['a flipped payload byte (encrypted)', random, true, (b: Buffer) => void (b[BLOB_HEADER_SIZE + 100] ^= 1), /CRC32 mismatch/],
    ['a truncated file', random, false, undefined, /payload length \d+ does not match/],
  ])('throws CorruptChunkError naming the chunk for %s', (_name, data, encrypted, damage, message) => {
    const s = stored(data, encrypted, damage);
    if (!damage) writeFileSync(s.file, s.blob.subarray(0, s.blob.length - 1));
    const err = (() => {
      try {
        decodeBlobFile(s.id, s.file, encrypted ? hmac : sha, encrypted ? encKey : undefined, new Uint8Array(data.length));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect((err as CorruptChunkError).chunkId).toBe(s.id.toString('hex'));
    expect((err as Error).message).toMatch(message);
  });

  it('refuses content that does not match its id even with a consistent CRC, and files shorter than a header', () => {
    const forged = stored(randomBytes(random.length));
    const victim = stored(random);
    expect(() => decodeBlobFile(victim.id, forged.file, sha, undefined, new Uint8Array(random.length))).toThrow(/content does not match the chunk id/);
    const short = path.join(tmp.dir, 'short');
    writeFileSync(short, forged.blob.subarray(0, 10));
    expect(() => decodeBlobFile(forged.id, short, sha)).toThrow(/blob of 10 bytes is shorter than its header/);
  });

  it('refuses a payload longer than any valid blob before allocating for it', () => {
    // A sparse file whose header claims a 9 MiB compressed payload for a 1 MiB chunk (its length matches the file).
    const file = path.join(tmp.dir, 'huge');
    const header = Buffer.from(stored(text).blob.subarray(0, BLOB_HEADER_SIZE));
    const payload = MAX_CHUNK_SIZE + 1024 * 1024;
    header.writeUInt32LE(1024 * 1024, BLOB_OFF_PLAIN_LENGTH);
    header.writeUInt32LE(payload, BLOB_OFF_PAYLOAD_LENGTH);
    const fd = openSync(file, 'w');
    writeSync(fd, header);
    ftruncateSync(fd, BLOB_HEADER_SIZE + payload);
    closeSync(fd);
    expect(() => decodeBlobFile(randomBytes(32), file, sha)).toThrow(/payload length \d+ exceeds the maximum blob size/);
  });
});
