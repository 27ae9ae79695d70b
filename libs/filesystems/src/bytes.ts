/** Small helpers shared by the readers: bounded reads, CRC-32, GUIDs and names. */
import type { Disk } from '@vmkeep/disk';
import { FileSystemError } from './errors';

/** Reads `length` bytes at `offset` of `disk`, failing with a FileSystemError that names `structure` when the range is outside. */
export async function readStructure(disk: Disk, source: string, structure: string, offset: number, length: number): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > disk.size) {
    throw new FileSystemError(source, structure, `lies outside the ${disk.size}-byte volume (${length} bytes)`, offset);
  }
  return disk.read(offset, length);
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, reflected), as used by GPT. */
export function crc32(data: Buffer): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** A GUID stored in Microsoft's mixed-endian layout (GPT), as lowercase text. */
export function mixedEndianGuid(buf: Buffer, at: number): string {
  const hex = (start: number, end: number) => buf.subarray(at + start, at + end).toString('hex');
  const le = (start: number, end: number) => Buffer.from(buf.subarray(at + start, at + end)).reverse().toString('hex');
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(8, 10)}-${hex(10, 16)}`;
}

/** A 16-byte big-endian UUID (ext) as lowercase text. */
export function uuidText(buf: Buffer, at: number): string {
  const h = buf.subarray(at, at + 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A NUL-padded byte string decoded as UTF-8 (or Latin-1 when `latin1`), without the padding. */
export function cString(buf: Buffer, at: number, length: number, latin1 = false): string {
  const bytes = buf.subarray(at, at + length);
  const nul = bytes.indexOf(0);
  return bytes.subarray(0, nul < 0 ? bytes.length : nul).toString(latin1 ? 'latin1' : 'utf8');
}

/** Reads a little-endian 64-bit unsigned value as a number, failing when it exceeds 2^53. */
export function u64(buf: Buffer, at: number, source: string, structure: string, offset: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FileSystemError(source, structure, `64-bit value ${v} is out of range`, offset + at);
  return Number(v);
}
