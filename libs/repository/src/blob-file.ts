/**
 * Reading a chunk file with the fewest copies, for the thread that decodes it (a chunk worker): the header first,
 * then the payload straight to where the decoder wants it — the plaintext buffer itself when the payload is the
 * plaintext (unencrypted, stored as is), else this thread's scratch buffer that decryption and zstd read from. No
 * allocation per chunk on the common paths; every check of decodeBlob applies unchanged.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ChunkIdScheme, decodePayload, parseBlobHeader } from './codec';
import { BLOB_HEADER_SIZE, COMPRESSION_NONE, MAX_CHUNK_SIZE, SEAL_OVERHEAD } from './constants';
import { CorruptChunkError } from './errors';

/** No valid blob's payload is longer: a compressed payload is always shorter than its plaintext (FORMAT.md). */
const MAX_PAYLOAD = MAX_CHUNK_SIZE + SEAL_OVERHEAD;

const header = Buffer.allocUnsafeSlow(BLOB_HEADER_SIZE);
/** This thread's buffer for payloads that are not the plaintext (compressed or encrypted), grown as needed. */
let scratch: Buffer | undefined;

function scratchOf(length: number): Buffer {
  if (!scratch || scratch.length < length) scratch = Buffer.allocUnsafeSlow(Math.max(length, 1024 * 1024));
  return scratch.subarray(0, length);
}

/** Reads exactly `into.length` bytes at `position`; false when the file ends first. */
function readExactly(fd: number, into: Buffer, position: number): boolean {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/**
 * The checked plaintext of the chunk stored in `file` (decodeBlob's checks and errors), or undefined when the file
 * does not exist. `into` receives the plaintext when it has exactly its length.
 */
export function decodeBlobFile(id: Buffer, file: string, scheme: ChunkIdScheme, key?: Uint8Array, into?: Uint8Array): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    const head = header.subarray(0, Math.min(BLOB_HEADER_SIZE, size));
    const corrupt = (reason: string) => new CorruptChunkError(id.toString('hex'), reason);
    if (!readExactly(fd, head, 0)) throw corrupt('chunk file shrank while being read');
    const parsed = parseBlobHeader(id, head, size, key);
    if (parsed.payloadLength > MAX_PAYLOAD) throw corrupt(`payload length ${parsed.payloadLength} exceeds the maximum blob size`);
    // Stored as is and unencrypted: the payload is the plaintext, read where it is to end up.
    const asIs = !key && parsed.compression === COMPRESSION_NONE && parsed.payloadLength === parsed.plainLength;
    const own = asIs ? (into?.byteLength === parsed.payloadLength ? Buffer.from(into.buffer, into.byteOffset, into.byteLength) : Buffer.allocUnsafeSlow(parsed.payloadLength)) : undefined;
    const stored = own ?? scratchOf(parsed.payloadLength);
    if (!readExactly(fd, stored, BLOB_HEADER_SIZE)) throw corrupt('chunk file shrank while being read');
    return decodePayload(id, parsed, stored, scheme, { key, into, payloadIsOwn: own !== undefined });
  } finally {
    closeSync(fd);
  }
}
