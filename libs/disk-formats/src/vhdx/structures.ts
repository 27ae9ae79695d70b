/**
 * VHDX on-disk structures (little-endian; REFERENCE.md 2.1, MS-VHDX): file identifier, the two headers,
 * the region table (two copies) and the metadata table with its items.
 */
import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { crc32cWithZeroedField } from './crc32c';
import { normalizeGuid, readGuid } from './guid';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const FILE_SIGNATURE = 'vhdxfile';
export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const HEADER_SIZE = 4 * KiB;
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;
export const REGION_TABLE_SIZE = 64 * KiB;
export const METADATA_TABLE_SIZE = 64 * KiB;
export const MAX_VIRTUAL_SIZE = 64 * 1024 ** 4;

export const REGION_BAT = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const REGION_METADATA = '8b7ca206-4790-4b9a-b8fe-575f050f886e';
export const META_FILE_PARAMETERS = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const META_VIRTUAL_DISK_SIZE = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const META_PAGE83 = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const META_LOGICAL_SECTOR = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const META_PHYSICAL_SECTOR = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const META_PARENT_LOCATOR = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';
export const PARENT_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';

export interface VhdxHeader {
  /** 1 or 2 (which copy). */
  index: number;
  offset: number;
  sequence: bigint;
  fileWriteGuid: string;
  dataWriteGuid: string;
  logGuid: string;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: number;
}

export interface Region {
  guid: string;
  offset: number;
  length: number;
  required: boolean;
}

export interface MetadataItem {
  guid: string;
  offset: number;
  length: number;
  isUser: boolean;
  isVirtualDisk: boolean;
  required: boolean;
}

function fail(message: string, file: string, structure: string, offset?: number): never {
  throw new DiskFormatError(message, file, structure, offset);
}

function safeU64(buf: Buffer, at: number, file: string, structure: string, base: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`field at ${at} is out of range (${v})`, file, structure, base + at);
  return Number(v);
}

/** Parses one header copy; throws DiskFormatError when it is not a valid header. */
export function parseHeader(buf: Buffer, index: number, file: string, fileSize: number): VhdxHeader {
  const offset = HEADER_OFFSETS[index - 1];
  const structure = `VHDX header ${index}`;
  if (buf.toString('latin1', 0, 4) !== 'head') fail('bad signature (expected "head")', file, structure, offset);
  const stored = buf.readUInt32LE(4);
  const computed = crc32cWithZeroedField(buf, 4);
  if (stored !== computed) fail(`CRC-32C mismatch (stored ${stored.toString(16)}, computed ${computed.toString(16)})`, file, structure, offset + 4);
  const version = buf.readUInt16LE(66);
  if (version !== 1) throw new UnsupportedFormatError(`unsupported version ${version}`, file, structure, offset + 66);
  const logLength = buf.readUInt32LE(68);
  const logOffset = safeU64(buf, 72, file, structure, offset);
  if (logLength % MiB !== 0 || logOffset % MiB !== 0 || (logLength > 0 && logOffset < MiB) || logOffset + logLength > Math.max(fileSize, MiB)) {
    fail(`log region ${logOffset}+${logLength} is not 1 MiB aligned or lies outside the file`, file, structure, offset + 68);
  }
  return {
    index,
    offset,
    sequence: buf.readBigUInt64LE(8),
    fileWriteGuid: readGuid(buf, 16),
    dataWriteGuid: readGuid(buf, 32),
    logGuid: readGuid(buf, 48),
    logVersion: buf.readUInt16LE(64),
    version,
    logLength,
    logOffset,
  };
}

export function parseRegionTable(buf: Buffer, copy: number, file: string, fileSize: number): Region[] {
  const offset = REGION_TABLE_OFFSETS[copy - 1];
  const structure = `VHDX region table ${copy}`;
  if (buf.toString('latin1', 0, 4) !== 'regi') fail('bad signature (expected "regi")', file, structure, offset);
  const stored = buf.readUInt32LE(4);
  const computed = crc32cWithZeroedField(buf, 4);
  if (stored !== computed) fail(`CRC-32C mismatch (stored ${stored.toString(16)}, computed ${computed.toString(16)})`, file, structure, offset + 4);
  const count = buf.readUInt32LE(8);
  if (count > 2047) fail(`${count} entries (at most 2047)`, file, structure, offset + 8);
  const regions: Region[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + i * 32;
    const region: Region = {
      guid: readGuid(buf, at),
      offset: safeU64(buf, at + 16, file, structure, offset),
      length: buf.readUInt32LE(at + 24),
      required: (buf.readUInt32LE(at + 28) & 1) !== 0,
    };
    if (region.offset < MiB || region.offset % MiB !== 0 || region.length % MiB !== 0 || region.length === 0) {
      fail(`region ${region.guid} at ${region.offset}+${region.length} is not 1 MiB aligned`, file, structure, offset + at);
    }
    if (region.offset + region.length > fileSize) {
      fail(`region ${region.guid} at ${region.offset}+${region.length} runs past the end of the file`, file, structure, offset + at);
    }
    const known = region.guid === REGION_BAT || region.guid === REGION_METADATA;
    if (!known && region.required) throw new UnsupportedFormatError(`unknown required region ${region.guid}`, file, structure, offset + at);
    if (regions.some((r) => r.offset < region.offset + region.length && region.offset < r.offset + r.length)) {
      fail(`region ${region.guid} overlaps another region`, file, structure, offset + at);
    }
    if (known) regions.push(region);
  }
  return regions;
}

export function parseMetadataTable(buf: Buffer, region: Region, file: string): MetadataItem[] {
  const structure = 'VHDX metadata table';
  if (buf.toString('latin1', 0, 8) !== 'metadata') fail('bad signature (expected "metadata")', file, structure, region.offset);
  const count = buf.readUInt16LE(10);
  if (count > 2047) fail(`${count} entries (at most 2047)`, file, structure, region.offset + 10);
  const items: MetadataItem[] = [];
  for (let i = 0; i < count; i++) {
    const at = 32 + i * 32;
    const flags = buf.readUInt32LE(at + 24);
    const item: MetadataItem = {
      guid: readGuid(buf, at),
      offset: buf.readUInt32LE(at + 16),
      length: buf.readUInt32LE(at + 20),
      isUser: (flags & 1) !== 0,
      isVirtualDisk: (flags & 2) !== 0,
      required: (flags & 4) !== 0,
    };
    if (item.length > 0 && (item.offset < METADATA_TABLE_SIZE || item.offset + item.length > region.length || item.length > MiB)) {
      fail(`item ${item.guid} at ${item.offset}+${item.length} lies outside the metadata region`, file, structure, region.offset + at);
    }
    items.push(item);
  }
  return items;
}

/** Parent locator key/values (UTF-16LE). */
export function parseParentLocator(buf: Buffer, file: string, at: number): Map<string, string> {
  const structure = 'VHDX parent locator';
  if (buf.length < 20) fail('too short', file, structure, at);
  const type = readGuid(buf, 0);
  if (type !== PARENT_LOCATOR_TYPE) throw new UnsupportedFormatError(`unknown locator type ${type}`, file, structure, at);
  const count = buf.readUInt16LE(18);
  if (20 + count * 12 > buf.length) fail(`${count} entries do not fit in ${buf.length} bytes`, file, structure, at + 18);
  const entries = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const e = 20 + i * 12;
    const keyOffset = buf.readUInt32LE(e);
    const valueOffset = buf.readUInt32LE(e + 4);
    const keyLength = buf.readUInt16LE(e + 8);
    const valueLength = buf.readUInt16LE(e + 10);
    if (keyOffset + keyLength > buf.length || valueOffset + valueLength > buf.length) {
      fail(`entry ${i} points outside the locator`, file, structure, at + e);
    }
    entries.set(
      buf.toString('utf16le', keyOffset, keyOffset + (keyLength & ~1)),
      buf.toString('utf16le', valueOffset, valueOffset + (valueLength & ~1)),
    );
  }
  return entries;
}

export { normalizeGuid };
