/**
 * VHD on-disk structures (big-endian): the 512-byte footer (at the end of every VHD, and copied at offset 0 of
 * dynamic and differencing disks) and the 1024-byte dynamic disk header. See REFERENCE.md 2.2.
 */
import { DiskFormatError, UnsupportedFormatError } from '../errors';

export const FOOTER_SIZE = 512;
export const DYNAMIC_HEADER_SIZE = 1024;
export const VHD_COOKIE = 'conectix';
export const DYNAMIC_COOKIE = 'cxsparse';
/** The format tops out at 2040 GiB; a little headroom for odd writers, nothing absurd. */
export const MAX_VHD_SIZE = 2 * 1024 ** 4;

export enum VhdType {
  Fixed = 2,
  Dynamic = 3,
  Differencing = 4,
}

export interface VhdFooter {
  dataOffset: number | null;
  timestamp: number;
  creatorApp: string;
  creatorVersion: number;
  creatorHostOs: string;
  originalSize: number;
  currentSize: number;
  geometry: { cylinders: number; heads: number; sectors: number };
  type: VhdType;
  uniqueId: string;
  savedState: boolean;
}

export interface VhdParentLocator {
  platform: string;
  dataLength: number;
  dataOffset: number;
}

export interface VhdDynamicHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
  parentUniqueId: string;
  parentTimestamp: number;
  parentName: string;
  locators: VhdParentLocator[];
}

/** One's complement of the byte sum, the checksum field itself counted as zero. */
export function vhdChecksum(data: Buffer, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < data.length; i++) {
    if (i < checksumOffset || i >= checksumOffset + 4) sum += data[i];
  }
  return ~sum >>> 0;
}

function u64(buf: Buffer, at: number, file: string, structure: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v === 0xffffffffffffffffn) return -1;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DiskFormatError(`field at ${at} is out of range (${v})`, file, structure);
  return Number(v);
}

function ascii(buf: Buffer): string {
  return buf.toString('latin1').replace(/\0+$/, '');
}

export function isVhdFooter(buf: Buffer): boolean {
  return buf.length >= 8 && buf.toString('latin1', 0, 8) === VHD_COOKIE;
}

export function parseFooter(buf: Buffer, file: string, offset: number): VhdFooter {
  const structure = 'VHD footer';
  if (!isVhdFooter(buf)) throw new DiskFormatError('bad cookie (expected "conectix")', file, structure, offset);
  const stored = buf.readUInt32BE(64);
  const computed = vhdChecksum(buf, 64);
  if (stored !== computed) {
    throw new DiskFormatError(`checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`, file, structure, offset + 64);
  }
  const version = buf.readUInt32BE(12);
  if (version >>> 16 !== 1) throw new UnsupportedFormatError(`unsupported version ${hex(version)}`, file, structure, offset + 12);
  const type = buf.readUInt32BE(60);
  if (type !== VhdType.Fixed && type !== VhdType.Dynamic && type !== VhdType.Differencing) {
    throw new UnsupportedFormatError(`unsupported disk type ${type}`, file, structure, offset + 60);
  }
  const currentSize = u64(buf, 48, file, structure);
  if (currentSize <= 0 || currentSize > MAX_VHD_SIZE || currentSize % 512 !== 0) {
    throw new DiskFormatError(`impossible disk size ${currentSize}`, file, structure, offset + 48);
  }
  const dataOffset = u64(buf, 16, file, structure);
  return {
    dataOffset: dataOffset < 0 ? null : dataOffset,
    timestamp: buf.readUInt32BE(24),
    creatorApp: ascii(buf.subarray(28, 32)),
    creatorVersion: buf.readUInt32BE(32),
    creatorHostOs: ascii(buf.subarray(36, 40)),
    originalSize: Math.max(0, u64(buf, 40, file, structure)),
    currentSize,
    geometry: { cylinders: buf.readUInt16BE(56), heads: buf[58], sectors: buf[59] },
    type,
    uniqueId: buf.toString('hex', 68, 84),
    savedState: buf[84] !== 0,
  };
}

export function parseDynamicHeader(buf: Buffer, file: string, offset: number): VhdDynamicHeader {
  const structure = 'VHD dynamic header';
  if (buf.toString('latin1', 0, 8) !== DYNAMIC_COOKIE) {
    throw new DiskFormatError('bad cookie (expected "cxsparse")', file, structure, offset);
  }
  const stored = buf.readUInt32BE(36);
  const computed = vhdChecksum(buf, 36);
  if (stored !== computed) {
    throw new DiskFormatError(`checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`, file, structure, offset + 36);
  }
  const blockSize = buf.readUInt32BE(32);
  if (blockSize < 512 || blockSize > 256 * 1024 * 1024 || (blockSize & (blockSize - 1)) !== 0) {
    throw new DiskFormatError(`block size ${blockSize} is not a power of two between 512 B and 256 MiB`, file, structure, offset + 32);
  }
  const tableOffset = u64(buf, 16, file, structure);
  if (tableOffset < 0) throw new DiskFormatError('no block allocation table offset', file, structure, offset + 16);
  const locators: VhdParentLocator[] = [];
  for (let i = 0; i < 8; i++) {
    const at = 576 + i * 24;
    const code = buf.readUInt32BE(at);
    if (code === 0) continue;
    locators.push({
      platform: ascii(buf.subarray(at, at + 4)),
      dataLength: buf.readUInt32BE(at + 8),
      dataOffset: u64(buf, at + 16, file, structure),
    });
  }
  return {
    tableOffset,
    maxTableEntries: buf.readUInt32BE(28),
    blockSize,
    parentUniqueId: buf.toString('hex', 40, 56),
    parentTimestamp: buf.readUInt32BE(56),
    parentName: utf16be(buf.subarray(64, 576)),
    locators,
  };
}

/** Decodes UTF-16BE up to the first NUL. */
export function utf16be(buf: Buffer): string {
  const swapped = Buffer.from(buf.subarray(0, buf.length & ~1));
  swapped.swap16();
  return swapped.toString('utf16le').replace(/\0.*$/s, '');
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
