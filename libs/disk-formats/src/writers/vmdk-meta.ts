/**
 * Building blocks of the VMDK writers (REFERENCE.md 1.1–1.4): the sparse extent header, metadata markers,
 * the text descriptor with its DDB, BIOS geometry and fresh identifiers.
 */
import { randomBytes } from 'node:crypto';
import { ImageWriteError } from './errors';
import type { VmdkAdapterType } from './options';

export const SECTOR = 512;
/** Default grain: 128 sectors = 64 KiB. */
export const GRAIN_SECTORS = 128;
export const GRAIN_BYTES = GRAIN_SECTORS * SECTOR;
export const GTES_PER_GT = 512;
/** One grain table: 512 u32 entries = 4 sectors. */
export const GT_SECTORS = (GTES_PER_GT * 4) / SECTOR;
/** Sector offsets in grain tables are u32: a sparse extent holds at most 2 TiB. */
export const MAX_SPARSE_CAPACITY = 2 ** 32 * SECTOR;
/** Largest sector offset a grain table or directory entry can hold. */
export const MAX_SECTOR_OFFSET = 0xffffffff;

export const FLAG_NEWLINE_DETECT = 0x1;
export const FLAG_REDUNDANT_GD = 0x2;
export const FLAG_COMPRESSED = 0x10000;
export const FLAG_MARKERS = 0x20000;
export const GD_AT_END = -1;

export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;

export interface SparseHeader {
  version: number;
  flags: number;
  capacitySectors: number;
  grainSectors: number;
  descriptorOffset: number;
  descriptorSectors: number;
  rgdOffset: number;
  /** Sector of the grain directory, or GD_AT_END. */
  gdOffset: number;
  overHead: number;
  compressAlgorithm: 0 | 1;
}

/** The 512-byte little-endian sparse extent header. */
export function encodeSparseHeader(h: SparseHeader): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.write('KDMV', 0, 'latin1');
  b.writeUInt32LE(h.version, 4);
  b.writeUInt32LE(h.flags, 8);
  b.writeBigUInt64LE(BigInt(h.capacitySectors), 12);
  b.writeBigUInt64LE(BigInt(h.grainSectors), 20);
  b.writeBigUInt64LE(BigInt(h.descriptorOffset), 28);
  b.writeBigUInt64LE(BigInt(h.descriptorSectors), 36);
  b.writeUInt32LE(GTES_PER_GT, 44);
  b.writeBigUInt64LE(BigInt(h.rgdOffset), 48);
  b.writeBigUInt64LE(h.gdOffset === GD_AT_END ? 0xffffffffffffffffn : BigInt(h.gdOffset), 56);
  b.writeBigUInt64LE(BigInt(h.overHead), 64);
  b.writeUInt8(0, 72); // clean shutdown
  Buffer.from([0x0a, 0x20, 0x0d, 0x0a]).copy(b, 73);
  b.writeUInt16LE(h.compressAlgorithm, 77);
  return b;
}

/** A streamOptimized metadata marker sector: `sectors` of metadata of `type` follow it. */
export function encodeMarker(sectors: number, type: number): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.writeBigUInt64LE(BigInt(sectors), 0);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(type, 12);
  return b;
}

/** Number of grain directory entries (= grain tables) for a capacity. */
export function gdEntries(capacitySectors: number, grainSectors = GRAIN_SECTORS): number {
  return Math.ceil(capacitySectors / (GTES_PER_GT * grainSectors));
}

export const sectorsFor = (bytes: number): number => Math.ceil(bytes / SECTOR);

/** Pads a buffer with zeros to a whole number of sectors. */
export function padToSector(data: Buffer): Buffer {
  const padded = sectorsFor(data.length) * SECTOR;
  return padded === data.length ? data : Buffer.concat([data, Buffer.alloc(padded - data.length)]);
}

export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

/** The BIOS geometry VMware records: 16 heads for IDE (≤ 16383 cylinders), 255 heads for SCSI, 63 sectors. */
export function biosGeometry(capacitySectors: number, adapter: VmdkAdapterType): Geometry {
  const heads = adapter === 'ide' ? 16 : 255;
  const sectors = 63;
  let cylinders = Math.max(1, Math.floor(capacitySectors / (heads * sectors)));
  if (adapter === 'ide') cylinders = Math.min(cylinders, 16383);
  return { cylinders, heads, sectors };
}

/** A random content ID: 8 hex digits, never the "no parent" value ffffffff. */
export function randomCid(): string {
  for (;;) {
    const cid = randomBytes(4).toString('hex');
    if (cid !== 'ffffffff' && cid !== '00000000') return cid;
  }
}

/** A random ddb.uuid in VMware's spelling: "xx xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx". */
export function randomDdbUuid(): string {
  const hex = [...randomBytes(16)].map((b) => b.toString(16).padStart(2, '0'));
  return `${hex.slice(0, 8).join(' ')}-${hex.slice(8).join(' ')}`;
}

export type VmdkCreateType = 'monolithicSparse' | 'streamOptimized' | 'vmfs';

export interface DescriptorOptions {
  createType: VmdkCreateType;
  capacitySectors: number;
  extentType: 'SPARSE' | 'VMFS';
  /** File name of the extent, relative to the descriptor's folder. */
  extentFile: string;
  adapterType: VmdkAdapterType;
  virtualHWVersion: number;
  cid?: string;
  uuid?: string;
}

/** Refuses names that would break the quoted descriptor syntax or leave the descriptor's folder. */
export function checkExtentFileName(name: string, target: string): void {
  // eslint-disable-next-line no-control-regex
  if (name === '' || /["\\/\x00-\x1f\x7f]/.test(name)) {
    throw new ImageWriteError(`"${name}" cannot be named in a VMDK descriptor (quotes, slashes or control characters)`, target);
  }
}

/** The text descriptor of a single-extent VMDK with its disk database. */
export function buildDescriptor(o: DescriptorOptions, target: string): string {
  checkExtentFileName(o.extentFile, target);
  const geo = biosGeometry(o.capacitySectors, o.adapterType);
  const lines = [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${o.cid ?? randomCid()}`,
    'parentCID=ffffffff',
    ...(o.createType === 'vmfs' ? ['isNativeSnapshot="no"'] : []),
    `createType="${o.createType}"`,
    '',
    '# Extent description',
    `RW ${o.capacitySectors} ${o.extentType} "${o.extentFile}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    `ddb.adapterType = "${o.adapterType}"`,
    `ddb.geometry.cylinders = "${geo.cylinders}"`,
    `ddb.geometry.heads = "${geo.heads}"`,
    `ddb.geometry.sectors = "${geo.sectors}"`,
    `ddb.longContentID = "${randomBytes(16).toString('hex')}"`,
    `ddb.uuid = "${o.uuid ?? randomDdbUuid()}"`,
    `ddb.virtualHWVersion = "${o.virtualHWVersion}"`,
  ];
  return lines.join('\n') + '\n';
}
