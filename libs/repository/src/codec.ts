/**
 * Chunk codec: chunk ids, compression and the blob layout of FORMAT.md. Pure functions over buffers, used on the
 * main thread and inside the chunk worker threads alike.
 */
import { createHash, createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import * as zstd from 'zstd-napi/binding';
import {
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
  ENCRYPTION_NONE,
  MAX_CHUNK_SIZE,
} from './constants';
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
  cctx ??= new zstd.CCtx();
  const out = Buffer.allocUnsafe(zstd.compressBound(data.length));
  const written = cctx.compress(out, data, level);
  if (written > data.length - Math.floor(data.length / COMPRESSION_MIN_GAIN_DIVISOR)) {
    return { compression: COMPRESSION_NONE, payload: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
  }
  // Copy so the (possibly much larger) bound-sized buffer is not kept alive.
  return { compression: COMPRESSION_ZSTD, payload: Buffer.from(out.subarray(0, written)) };
}

/** Builds a blob: header + payload (layout in FORMAT.md). */
export function encodeBlob(plainLength: number, encoded: EncodedPayload): Buffer {
  const { payload } = encoded;
  const blob = Buffer.allocUnsafe(BLOB_HEADER_SIZE + payload.length);
  BLOB_MAGIC.copy(blob, BLOB_OFF_MAGIC);
  blob.writeUInt8(BLOB_VERSION, BLOB_OFF_VERSION);
  blob.writeUInt8(encoded.compression, BLOB_OFF_COMPRESSION);
  blob.writeUInt8(ENCRYPTION_NONE, BLOB_OFF_ENCRYPTION);
  blob.writeUInt8(0, BLOB_OFF_FLAGS);
  blob.writeUInt32LE(plainLength, BLOB_OFF_PLAIN_LENGTH);
  blob.writeUInt32LE(payload.length, BLOB_OFF_PAYLOAD_LENGTH);
  blob.writeUInt32LE(crc32(payload), BLOB_OFF_CRC32);
  blob.writeUInt32LE(0, BLOB_OFF_RESERVED);
  payload.copy(blob, BLOB_HEADER_SIZE);
  return blob;
}

/**
 * Checks a blob (magic, version, CRC32, lengths, id) and returns the chunk's plaintext. Any mismatch throws
 * CorruptChunkError naming the chunk.
 */
export function decodeBlob(id: Buffer, blob: Buffer, scheme: ChunkIdScheme): Buffer {
  const idHex = id.toString('hex');
  const corrupt = (reason: string) => new CorruptChunkError(idHex, reason);
  if (blob.length < BLOB_HEADER_SIZE) throw corrupt(`blob of ${blob.length} bytes is shorter than its header`);
  if (!blob.subarray(BLOB_OFF_MAGIC, BLOB_OFF_MAGIC + BLOB_MAGIC.length).equals(BLOB_MAGIC)) {
    throw corrupt('bad magic');
  }
  const version = blob.readUInt8(BLOB_OFF_VERSION);
  if (version !== BLOB_VERSION) throw corrupt(`unknown blob version ${version}`);
  const encryption = blob.readUInt8(BLOB_OFF_ENCRYPTION);
  if (encryption !== ENCRYPTION_NONE) throw corrupt(`unsupported encryption ${encryption}`);
  const compression = blob.readUInt8(BLOB_OFF_COMPRESSION);
  const plainLength = blob.readUInt32LE(BLOB_OFF_PLAIN_LENGTH);
  const payloadLength = blob.readUInt32LE(BLOB_OFF_PAYLOAD_LENGTH);
  if (plainLength > MAX_CHUNK_SIZE) throw corrupt(`plaintext length ${plainLength} exceeds the maximum chunk size`);
  if (payloadLength !== blob.length - BLOB_HEADER_SIZE) {
    throw corrupt(`payload length ${payloadLength} does not match the ${blob.length - BLOB_HEADER_SIZE} bytes stored`);
  }
  const payload = blob.subarray(BLOB_HEADER_SIZE);
  if (crc32(payload) !== blob.readUInt32LE(BLOB_OFF_CRC32)) throw corrupt('CRC32 mismatch');
  let plain: Buffer;
  if (compression === COMPRESSION_NONE) {
    if (payloadLength !== plainLength) throw corrupt('stored length differs from plaintext length');
    plain = Buffer.from(payload);
  } else if (compression === COMPRESSION_ZSTD) {
    plain = Buffer.allocUnsafe(plainLength);
    let written: number;
    try {
      dctx ??= new zstd.DCtx();
      written = dctx.decompress(plain, payload);
    } catch (err) {
      throw corrupt(`zstd: ${(err as Error).message}`);
    }
    if (written !== plainLength) throw corrupt(`decompressed to ${written} bytes, expected ${plainLength}`);
  } else {
    throw corrupt(`unknown compression ${compression}`);
  }
  const actual = computeChunkId(scheme, plain);
  if (actual.length !== CHUNK_ID_BYTES || !actual.equals(id)) throw corrupt('content does not match the chunk id');
  return plain;
}
