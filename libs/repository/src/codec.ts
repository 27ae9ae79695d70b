/**
 * Chunk codec: chunk ids, compression and the blob layout of FORMAT.md. Pure functions over buffers, used on the
 * main thread and inside the chunk worker threads alike.
 */
import { createHash, createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import * as zstd from 'zstd-napi/binding';
import {
  BLOB_AAD_BYTES,
  BLOB_HEADER_SIZE,
  BLOB_MAGIC,
  BLOB_OFF_COMPRESSION,
  BLOB_OFF_CRC32,
  BLOB_OFF_ENCRYPTION,
  BLOB_OFF_FLAGS,
  BLOB_OFF_MAGIC,
  BLOB_OFF_PAYLOAD_LENGTH,
  BLOB_OFF_PLAIN_LENGTH,
  BLOB_OFF_RESERVED,
  BLOB_OFF_VERSION,
  BLOB_VERSION,
  CHUNK_ID_BYTES,
  COMPRESSION_MIN_GAIN_DIVISOR,
  COMPRESSION_NONE,
  COMPRESSION_ZSTD,
  ENCRYPTION_AES_256_GCM,
  ENCRYPTION_NONE,
  MAX_CHUNK_SIZE,
  SEAL_OVERHEAD,
} from './constants';
import { sealParts, unseal } from './crypto';
import { CorruptChunkError } from './errors';

/**
 * How chunk ids are computed. Unencrypted repositories use SHA-256 of the plaintext; encrypted ones (later) use
 * HMAC-SHA256 with a repository key so stored names reveal nothing about the content.
 */
export type ChunkIdScheme = { algorithm: 'sha256' } | { algorithm: 'hmac-sha256'; key: Uint8Array };

export function computeChunkId(scheme: ChunkIdScheme, data: Uint8Array): Buffer {
  return scheme.algorithm === 'sha256'
    ? createHash('sha256').update(data).digest()
    : createHmac('sha256', scheme.key).update(data).digest();
}

/**
 * `u` itself when it spans its whole ArrayBuffer (so transferring it moves exactly these bytes), else an exact
 * copy: transferring or posting a view would move or clone the whole underlying slab.
 */
export function standalone(u: Uint8Array): Uint8Array {
  if (u.byteOffset === 0 && u.byteLength === u.buffer.byteLength) return u;
  const copy = new Uint8Array(u.byteLength);
  copy.set(u);
  return copy;
}

/** Compresses (when it pays) and, with `sealing`, encrypts a chunk: the whole blob to store. */
export function encodeChunk(data: Uint8Array, level: number, sealing?: BlobSealing): Buffer {
  // The compressed bytes stay in this thread's scratch buffer: the blob is their only copy.
  return encodeBlob(data.length, compressToScratch(data, level), sealing);
}

/** A chunk's payload as it goes into a blob. */
export interface EncodedPayload {
  compression: number;
  payload: Buffer;
}

let cctx: zstd.CCtx | undefined;
let dctx: zstd.DCtx | undefined;

/**
 * zstd-compresses `data`, or keeps it as is when compression saves less than 1/32 of it (the payload is then a
 * view of `data`, not a copy).
 */
export function compressChunk(data: Uint8Array, level: number): EncodedPayload {
  const encoded = compressToScratch(data, level);
  // A compressed payload lives in the shared scratch buffer: hand out a copy of its own.
  return encoded.compression === COMPRESSION_NONE ? encoded : { compression: encoded.compression, payload: Buffer.from(encoded.payload) };
}

/** Per-thread output buffer of compression, reused for every chunk (a chunk-sized allocation less per chunk). */
let scratch: Buffer | undefined;

/** compressChunk, but a compressed payload is a view of a scratch buffer valid until the next call. */
function compressToScratch(data: Uint8Array, level: number): EncodedPayload {
  cctx ??= new zstd.CCtx();
  const bound = zstd.compressBound(data.length);
  if (!scratch || scratch.length < bound) scratch = Buffer.allocUnsafeSlow(bound);
  const written = cctx.compress(scratch, data, level);
  if (written > data.length - Math.floor(data.length / COMPRESSION_MIN_GAIN_DIVISOR)) {
    return { compression: COMPRESSION_NONE, payload: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
  }
  return { compression: COMPRESSION_ZSTD, payload: scratch.subarray(0, written) };
}

/** Encrypts a blob's payload: the AES-256-GCM key and the chunk id (authenticated with the header). */
export interface BlobSealing {
  key: Uint8Array;
  id: Uint8Array;
}

const blobAad = (header: Buffer, id: Uint8Array) => Buffer.concat([header.subarray(0, BLOB_AAD_BYTES), id]);

/**
 * Builds a blob: header + payload (layout in FORMAT.md). With `sealing` the payload is nonce ‖ AES-256-GCM
 * ciphertext ‖ tag, authenticated together with the header fields and the chunk id.
 */
export function encodeBlob(plainLength: number, encoded: EncodedPayload, sealing?: BlobSealing): Buffer {
  const parts = encodeBlobParts(plainLength, encoded, sealing);
  if (parts.length === 1) return parts[0];
  // One allocation, not from the shared pool: worker threads transfer the blob's ArrayBuffer.
  const blob = Buffer.allocUnsafeSlow(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) at += part.copy(blob, at);
  return blob;
}

/**
 * encodeChunk as consecutive parts of the blob, each a buffer of its own (transferable between threads): a
 * sealed blob is not assembled, so its ciphertext is not copied and no chunk-sized buffer is left behind.
 */
export function encodeChunkParts(data: Uint8Array, level: number, sealing?: BlobSealing): Buffer[] {
  return encodeBlobParts(data.length, compressToScratch(data, level), sealing);
}

/**
 * The blob of encodeBlob in parts: unsealed, one buffer (header + payload); sealed, header ‖ nonce, the
 * ciphertext as the cipher returned it, and the tag.
 */
function encodeBlobParts(plainLength: number, encoded: EncodedPayload, sealing?: BlobSealing): Buffer[] {
  const payloadLength = encoded.payload.length + (sealing ? SEAL_OVERHEAD : 0);
  const header = Buffer.alloc(BLOB_HEADER_SIZE);
  BLOB_MAGIC.copy(header, BLOB_OFF_MAGIC);
  header.writeUInt8(BLOB_VERSION, BLOB_OFF_VERSION);
  header.writeUInt8(encoded.compression, BLOB_OFF_COMPRESSION);
  header.writeUInt8(sealing ? ENCRYPTION_AES_256_GCM : ENCRYPTION_NONE, BLOB_OFF_ENCRYPTION);
  header.writeUInt8(0, BLOB_OFF_FLAGS);
  header.writeUInt32LE(plainLength, BLOB_OFF_PLAIN_LENGTH);
  header.writeUInt32LE(payloadLength, BLOB_OFF_PAYLOAD_LENGTH);
  header.writeUInt32LE(0, BLOB_OFF_RESERVED);
  if (!sealing) {
    const blob = Buffer.allocUnsafeSlow(BLOB_HEADER_SIZE + payloadLength);
    header.copy(blob, 0);
    encoded.payload.copy(blob, BLOB_HEADER_SIZE);
    blob.writeUInt32LE(crc32(encoded.payload), BLOB_OFF_CRC32);
    return [blob];
  }
  const { nonce, body, tag } = sealParts(sealing.key, encoded.payload, blobAad(header, sealing.id));
  const head = Buffer.allocUnsafeSlow(BLOB_HEADER_SIZE + nonce.length);
  header.copy(head, 0);
  nonce.copy(head, BLOB_HEADER_SIZE);
  // The CRC32 of the payload, continued part by part (an empty part is skipped: crc32 of nothing drops the value).
  head.writeUInt32LE([nonce, body, tag].reduce((crc, part) => (part.length ? crc32(part, crc) : crc), 0), BLOB_OFF_CRC32);
  const tail = Buffer.allocUnsafeSlow(tag.length);
  tag.copy(tail, 0);
  return [head, ownBuffer(body), tail];
}

/** `b` when it spans its whole ArrayBuffer, else a copy that does. */
const ownBuffer = (b: Buffer): Buffer => {
  const own = standalone(b);
  return own === b ? b : Buffer.from(own.buffer, own.byteOffset, own.byteLength);
};

/**
 * The full scrub `verify` does on top of decodeBlob: a stored CRC32 that does not match its payload is storage damage
 * even where the content itself still proves correct (the damage may be in the CRC field).
 */
export function checkBlobCrc(id: Buffer, blob: Buffer): void {
  if (blob.length < BLOB_HEADER_SIZE) return; // decodeBlob names a blob shorter than its header
  if (crc32(blob.subarray(BLOB_HEADER_SIZE)) !== blob.readUInt32LE(BLOB_OFF_CRC32)) {
    throw new CorruptChunkError(id.toString('hex'), 'CRC32 mismatch');
  }
}

/** The checked header of a stored blob: what decodePayload needs to check and decode its payload. */
export interface BlobHeader {
  /** The header's bytes (the AES-GCM additional data is taken from them). */
  bytes: Buffer;
  compression: number;
  plainLength: number;
  /** Bytes stored after the header: equal to what the blob holds (checked). */
  payloadLength: number;
}

/**
 * Checks the header of a blob of `blobLength` bytes (magic, version, encryption, plaintext length, payload length
 * against the bytes stored): CorruptChunkError naming chunk `id` on any mismatch. `header` holds the blob's first
 * bytes (at least BLOB_HEADER_SIZE of them when the blob is that long). `key`: as in decodeBlob.
 */
export function parseBlobHeader(id: Buffer, header: Buffer, blobLength: number, key?: Uint8Array): BlobHeader {
  const corrupt = (reason: string) => new CorruptChunkError(id.toString('hex'), reason);
  if (blobLength < BLOB_HEADER_SIZE || header.length < BLOB_HEADER_SIZE) {
    throw corrupt(`blob of ${blobLength} bytes is shorter than its header`);
  }
  if (!header.subarray(BLOB_OFF_MAGIC, BLOB_OFF_MAGIC + BLOB_MAGIC.length).equals(BLOB_MAGIC)) {
    throw corrupt('bad magic');
  }
  const version = header.readUInt8(BLOB_OFF_VERSION);
  if (version !== BLOB_VERSION) throw corrupt(`unknown blob version ${version}`);
  const encryption = header.readUInt8(BLOB_OFF_ENCRYPTION);
  if (encryption !== (key ? ENCRYPTION_AES_256_GCM : ENCRYPTION_NONE)) {
    throw corrupt(key ? 'not encrypted, in an encrypted repository' : `unsupported encryption ${encryption}`);
  }
  const compression = header.readUInt8(BLOB_OFF_COMPRESSION);
  const plainLength = header.readUInt32LE(BLOB_OFF_PLAIN_LENGTH);
  const payloadLength = header.readUInt32LE(BLOB_OFF_PAYLOAD_LENGTH);
  if (plainLength > MAX_CHUNK_SIZE) throw corrupt(`plaintext length ${plainLength} exceeds the maximum chunk size`);
  if (payloadLength !== blobLength - BLOB_HEADER_SIZE) {
    throw corrupt(`payload length ${payloadLength} does not match the ${blobLength - BLOB_HEADER_SIZE} bytes stored`);
  }
  return { bytes: header.subarray(0, BLOB_HEADER_SIZE), compression, plainLength, payloadLength };
}

/**
 * Checks a blob (magic, version, lengths, and then either the AES-GCM tag, which authenticates the payload
 * together with the header and the id, or — unencrypted — the id recomputed from the plaintext; the CRC32 names
 * storage damage once one of those failed) and returns the
 * chunk's plaintext. Any mismatch throws CorruptChunkError naming the chunk. `key` is the AES key of an
 * encrypted repository: there every blob must be encrypted, elsewhere none may be. `into` receives the
 * plaintext when it has exactly its length (its old content is then overwritten), saving an allocation.
 */
export function decodeBlob(id: Buffer, blob: Buffer, scheme: ChunkIdScheme, key?: Uint8Array, into?: Uint8Array): Buffer {
  const header = parseBlobHeader(id, blob, blob.length, key);
  return decodePayload(id, header, blob.subarray(BLOB_HEADER_SIZE), scheme, { key, into });
}

/** Options of decodePayload. */
export interface PayloadOptions {
  /** The AES key of an encrypted repository (as in decodeBlob). */
  key?: Uint8Array;
  /** Receives the plaintext when it has exactly its length (see decodeBlob). */
  into?: Uint8Array;
  /**
   * The stored payload is a buffer of the caller's own that may become the plaintext itself (a payload stored
   * as is, unencrypted, is then returned without a copy).
   */
  payloadIsOwn?: boolean;
}

/**
 * The second half of decodeBlob: checks and decodes the `stored` payload (exactly header.payloadLength bytes) of a
 * blob whose header parseBlobHeader accepted. Same checks and errors as decodeBlob.
 */
export function decodePayload(id: Buffer, header: BlobHeader, stored: Buffer, scheme: ChunkIdScheme, opts: PayloadOptions = {}): Buffer {
  const { key, into } = opts;
  const { compression, plainLength } = header;
  const corrupt = (reason: string) => new CorruptChunkError(id.toString('hex'), reason);
  if (stored.length !== header.payloadLength) throw corrupt(`payload of ${stored.length} bytes, the header says ${header.payloadLength}`);
  // The CRC32 only tells damaged storage apart from other failures: the AES-GCM tag (encrypted) or the id
  // recomputed from the plaintext (plain) already prove the content, so it is computed only once a check failed.
  const damaged = (reason: string) =>
    corrupt(crc32(stored) !== header.bytes.readUInt32LE(BLOB_OFF_CRC32) ? 'CRC32 mismatch' : reason);
  let payload = stored;
  if (key) {
    const opened = unseal(key, stored, blobAad(header.bytes, id));
    if (!opened) throw damaged('authentication failed (AES-256-GCM)');
    payload = opened;
  }
  // A spare buffer of exactly the right size (a recycled chunk) saves an allocation.
  const target = () => (into?.byteLength === plainLength ? Buffer.from(into.buffer, into.byteOffset, into.byteLength) : undefined);
  let plain: Buffer;
  if (compression === COMPRESSION_NONE) {
    if (payload.length !== plainLength) throw damaged('stored length differs from plaintext length');
    // Decrypted bytes or the caller's own buffer are the plaintext as they are; a view of a blob is copied out.
    if (key || opts.payloadIsOwn) plain = payload;
    else {
      plain = target() ?? Buffer.allocUnsafe(plainLength);
      payload.copy(plain);
    }
  } else if (compression === COMPRESSION_ZSTD) {
    plain = target() ?? Buffer.allocUnsafe(plainLength);
    let written: number;
    try {
      dctx ??= new zstd.DCtx();
      written = dctx.decompress(plain, payload);
    } catch (err) {
      throw damaged(`zstd: ${(err as Error).message}`);
    }
    if (written !== plainLength) throw damaged(`decompressed to ${written} bytes, expected ${plainLength}`);
  } else {
    throw corrupt(`unknown compression ${compression}`);
  }
  // An encrypted blob passed AES-GCM authentication over its payload, header fields and this id: only a holder
  // of the key made it for this id, so re-hashing the plaintext would add cost, not integrity. A plain blob has
  // only its CRC32, which anyone can recompute: there the id is checked against the content.
  if (!key) {
    const actual = computeChunkId(scheme, plain);
    if (actual.length !== CHUNK_ID_BYTES || !actual.equals(id)) throw damaged('content does not match the chunk id');
  }
  return plain;
}
