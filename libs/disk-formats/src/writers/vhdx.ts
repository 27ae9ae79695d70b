/**
 * VHDX dynamic writer (REFERENCE.md 2.1): file identifier, two headers (CRC-32C, sequence 1 and 2), two region
 * tables, an empty log, the metadata region (block size, virtual size, page 83 id, sector sizes) and the BAT.
 * Payload blocks are allocated in disk order when they first receive data; all-zero parts of an allocated
 * block stay holes, and blocks without data stay NOT_PRESENT (they read as zeros). Memory: the BAT (8 bytes
 * per block) and the scan batches.
 */
import { randomBytes } from 'node:crypto';
import type { Disk } from '@vmkeep/disk';
import { crc32c } from '../vhdx/crc32c';
import { ImageWriteError } from './errors';
import type { WriteOptions, WriteResult } from './options';
import { atomically } from './output';
import { scanData } from './scan';
import { checkSectorDisk } from './validate';

const KiB = 1024;
const MiB = 1024 * KiB;
const HEADER_OFFSETS = [64 * KiB, 128 * KiB];
const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB];
const LOG_OFFSET = 1 * MiB;
const LOG_LENGTH = 1 * MiB;
const METADATA_OFFSET = 2 * MiB;
const METADATA_LENGTH = 1 * MiB;
const BAT_OFFSET = 3 * MiB;
const LOGICAL_SECTOR = 512;
const PHYSICAL_SECTOR = 4096;
export const VHDX_DEFAULT_BLOCK = 32 * MiB;
const MAX_VHDX_DISK = 64 * 2 ** 40;
/** Zero detection inside a block: parts of this size that are all zeros are left as holes. */
const HOLE_UNIT = 64 * KiB;

const BAT_FULLY_PRESENT = 6n;

const GUID = {
  bat: '2DC27766-F623-4200-9D64-115E9BFD4A08',
  metadata: '8B7CA206-4790-4B9A-B8FE-575F050F886E',
  fileParameters: 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B',
  virtualDiskSize: '2FA54224-CD1B-4876-B211-5DBED83BF4B8',
  page83: 'BECA12AB-B2E6-4523-93EF-C309E000C746',
  logicalSectorSize: '8141BF1D-A96F-4709-BA47-F233A8FAAB5F',
  physicalSectorSize: 'CDA348C7-445D-4471-9CC9-E9885251C556',
};

/** A GUID in its on-disk form: u32 LE, u16 LE, u16 LE, then 8 bytes as written. */
export function guidBytes(text: string): Buffer {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`not a GUID: ${text}`);
  const b = Buffer.from(hex, 'hex');
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

/** A random version-4 GUID in on-disk form. */
function randomGuid(): Buffer {
  const b = randomBytes(16);
  b[7] = (b[7] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return b;
}

function withChecksum(b: Buffer): Buffer {
  b.writeUInt32LE(0, 4);
  b.writeUInt32LE(crc32c(b), 4);
  return b;
}

export interface VhdxLayout {
  blockSize: number;
  chunkRatio: number;
  dataBlocks: number;
  batEntries: number;
  batLength: number;
  /** First payload byte (1 MiB aligned). */
  dataOffset: number;
}

export function vhdxLayout(size: number, blockSize: number): VhdxLayout {
  const chunkRatio = (2 ** 23 * LOGICAL_SECTOR) / blockSize;
  const dataBlocks = Math.ceil(size / blockSize);
  const batEntries = dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  const batLength = Math.ceil((batEntries * 8) / MiB) * MiB;
  return { blockSize, chunkRatio, dataBlocks, batEntries, batLength, dataOffset: BAT_OFFSET + batLength };
}

function fileIdentifier(): Buffer {
  const b = Buffer.alloc(64 * KiB);
  b.write('vhdxfile', 0, 'latin1');
  b.write('VMKeep', 8, 'utf16le');
  return b;
}

function header(sequence: number, fileWrite: Buffer, dataWrite: Buffer): Buffer {
  const b = Buffer.alloc(4 * KiB);
  b.write('head', 0, 'latin1');
  b.writeBigUInt64LE(BigInt(sequence), 8);
  fileWrite.copy(b, 16);
  dataWrite.copy(b, 32);
  // LogGuid (48) stays zero: the log is empty, nothing to replay.
  b.writeUInt16LE(0, 64); // log version
  b.writeUInt16LE(1, 66); // version
  b.writeUInt32LE(LOG_LENGTH, 68);
  b.writeBigUInt64LE(BigInt(LOG_OFFSET), 72);
  return withChecksum(b);
}

function regionTable(layout: VhdxLayout): Buffer {
  const b = Buffer.alloc(64 * KiB);
  b.write('regi', 0, 'latin1');
  b.writeUInt32LE(2, 8);
  const entries: [string, number, number][] = [
    [GUID.bat, BAT_OFFSET, layout.batLength],
    [GUID.metadata, METADATA_OFFSET, METADATA_LENGTH],
  ];
  entries.forEach(([guid, offset, length], i) => {
    const at = 16 + i * 32;
    guidBytes(guid).copy(b, at);
    b.writeBigUInt64LE(BigInt(offset), at + 16);
    b.writeUInt32LE(length, at + 24);
    b.writeUInt32LE(1, at + 28); // required
  });
  return withChecksum(b);
}

const META_VIRTUAL_DISK = 0x2;
const META_REQUIRED = 0x4;

function metadataRegion(size: number, blockSize: number): Buffer {
  const b = Buffer.alloc(METADATA_LENGTH);
  b.write('metadata', 0, 'latin1');
  const u32 = (v: number) => {
    const x = Buffer.alloc(4);
    x.writeUInt32LE(v);
    return x;
  };
  const fileParams = Buffer.alloc(8);
  fileParams.writeUInt32LE(blockSize, 0); // flags (4) stay 0: no parent, blocks may be unallocated
  const diskSize = Buffer.alloc(8);
  diskSize.writeBigUInt64LE(BigInt(size));
  const items: [string, Buffer, number][] = [
    [GUID.fileParameters, fileParams, META_REQUIRED],
    [GUID.virtualDiskSize, diskSize, META_VIRTUAL_DISK | META_REQUIRED],
    [GUID.page83, randomGuid(), META_VIRTUAL_DISK | META_REQUIRED],
    [GUID.logicalSectorSize, u32(LOGICAL_SECTOR), META_VIRTUAL_DISK | META_REQUIRED],
    [GUID.physicalSectorSize, u32(PHYSICAL_SECTOR), META_VIRTUAL_DISK | META_REQUIRED],
  ];
  b.writeUInt16LE(items.length, 10);
  let dataAt = 64 * KiB;
  items.forEach(([guid, data, flags], i) => {
    const at = 32 + i * 32;
    guidBytes(guid).copy(b, at);
    b.writeUInt32LE(dataAt, at + 16);
    b.writeUInt32LE(data.length, at + 20);
    b.writeUInt32LE(flags, at + 24);
    data.copy(b, dataAt);
    dataAt += data.length;
  });
  return b;
}

function checkBlockSize(blockSize: number, target: string): void {
  if (!Number.isInteger(blockSize) || blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
    throw new ImageWriteError(`VHDX block size must be a power of two from 1 MiB to 256 MiB, got ${blockSize}`, target);
  }
}

export async function writeVhdx(source: Disk, out: string, opts: WriteOptions = {}): Promise<WriteResult> {
  const blockSize = opts.vhdxBlockSize ?? VHDX_DEFAULT_BLOCK;
  checkBlockSize(blockSize, out);
  checkSectorDisk(source, MAX_VHDX_DISK, 'VHDX', out);
  const layout = vhdxLayout(source.size, blockSize);
  const bat = Buffer.alloc(layout.batEntries * 8);
  const fileWrite = randomGuid();
  const dataWrite = randomGuid();

  return atomically(async (files) => {
    const file = await files.open(out);
    await file.truncate(layout.dataOffset);
    await file.writeAt(fileIdentifier(), 0);
    await file.writeAt(header(1, fileWrite, dataWrite), HEADER_OFFSETS[0]);
    await file.writeAt(header(2, fileWrite, dataWrite), HEADER_OFFSETS[1]);
    const regions = regionTable(layout);
    for (const at of REGION_TABLE_OFFSETS) await file.writeAt(regions, at);
    await file.writeAt(metadataRegion(source.size, blockSize), METADATA_OFFSET);

    let nextBlock = layout.dataOffset;
    for await (const piece of scanData(source, { unit: HOLE_UNIT, signal: opts.signal, onProgress: opts.onProgress })) {
      for (let pos = 0; pos < piece.data.length; ) {
        const offset = piece.offset + pos;
        const block = Math.floor(offset / blockSize);
        const within = offset - block * blockSize;
        const part = piece.data.subarray(pos, pos + blockSize - within);
        const entry = (block + Math.floor(block / layout.chunkRatio)) * 8;
        let blockAt = Number(bat.readBigUInt64LE(entry) & ~0xfffffn);
        if (blockAt === 0) {
          blockAt = nextBlock;
          nextBlock += blockSize;
          bat.writeBigUInt64LE(BigInt(blockAt) | BAT_FULLY_PRESENT, entry);
        }
        await file.writeAt(part, blockAt + within);
        pos += part.length;
      }
    }
    await file.writeAt(bat, BAT_OFFSET);
    await file.truncate(nextBlock);
    await file.finish();
    return { files: [out], bytesWritten: file.bytesWritten };
  });
}

/**
 * Bytes [0, layout.dataOffset) of a dynamic VHDX whose payload blocks `present` (ascending block numbers) are
 * stored back to back from layout.dataOffset: identifier, headers, region tables, empty log, metadata and BAT.
 * For exporters that must produce the file strictly in order (an HTTP response).
 */
export function vhdxPrologue(size: number, layout: VhdxLayout, present: readonly number[]): Buffer {
  const b = Buffer.alloc(layout.dataOffset);
  const fileWrite = randomGuid();
  const dataWrite = randomGuid();
  fileIdentifier().copy(b, 0);
  header(1, fileWrite, dataWrite).copy(b, HEADER_OFFSETS[0]);
  header(2, fileWrite, dataWrite).copy(b, HEADER_OFFSETS[1]);
  const regions = regionTable(layout);
  for (const at of REGION_TABLE_OFFSETS) regions.copy(b, at);
  metadataRegion(size, layout.blockSize).copy(b, METADATA_OFFSET);
  present.forEach((block, i) => {
    const entry = BAT_OFFSET + (block + Math.floor(block / layout.chunkRatio)) * 8;
    b.writeBigUInt64LE(BigInt(layout.dataOffset + i * layout.blockSize) | BAT_FULLY_PRESENT, entry);
  });
  return b;
}
