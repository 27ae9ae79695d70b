/**
 * VHDX reader: fixed, dynamic and differencing disks (sector bitmaps for PARTIALLY_PRESENT blocks), with both
 * headers and region tables checked by CRC-32C and a non-empty log replayed in memory before anything else is
 * trusted.
 */
import * as path from 'node:path';
import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { ByteSource, FileSource } from '../source';
import type { ImageDisk, ImageInfo } from '../types';
import { BlockImage, BlockMap, BlockState, BoundedCache, bufferBitmap, MAX_CHAIN_DEPTH, PagedTable } from '../vhd/block-image';
import { findParentFile } from '../vhd/parent';
import { normalizeGuid, ZERO_GUID } from './guid';
import { replayLog } from './log';
import {
  FILE_SIGNATURE,
  HEADER_OFFSETS,
  HEADER_SIZE,
  MAX_VIRTUAL_SIZE,
  META_FILE_PARAMETERS,
  META_LOGICAL_SECTOR,
  META_PAGE83,
  META_PARENT_LOCATOR,
  META_PHYSICAL_SECTOR,
  META_VIRTUAL_DISK_SIZE,
  METADATA_TABLE_SIZE,
  MetadataItem,
  MiB,
  parseHeader,
  parseMetadataTable,
  parseParentLocator,
  parseRegionTable,
  Region,
  REGION_BAT,
  REGION_METADATA,
  REGION_TABLE_OFFSETS,
  REGION_TABLE_SIZE,
  VhdxHeader,
} from './structures';

export { crc32c } from './crc32c';
export { VhdxLogError } from './log';
export * from './structures';

const MAX_COUNTED_ENTRIES = 4 * 1024 * 1024;

export interface VhdxOpenOptions {
  /** Parent chain depth so far (internal: stops loops). */
  depth?: number;
}

export interface VhdxParameters {
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
  virtualSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  page83?: string;
  parentLocator?: Map<string, string>;
}

export function isVhdx(firstBytes: Buffer): boolean {
  return firstBytes.length >= 8 && firstBytes.toString('latin1', 0, 8) === FILE_SIGNATURE;
}

export async function openVhdx(file: string, options: VhdxOpenOptions = {}): Promise<ImageDisk> {
  const source = await FileSource.open(file);
  try {
    return await openVhdxSource(source, file, options);
  } catch (err) {
    await source.close();
    throw err;
  }
}

/** Picks the valid header with the higher sequence number; a damaged copy is a warning, two are an error. */
async function readHeaders(source: ByteSource, warnings: string[]): Promise<VhdxHeader> {
  const valid: VhdxHeader[] = [];
  const problems: string[] = [];
  for (const index of [1, 2]) {
    try {
      const buf = await source.read(HEADER_OFFSETS[index - 1], HEADER_SIZE, `VHDX header ${index}`);
      valid.push(parseHeader(buf, index, source.name, source.size));
    } catch (err) {
      if (!(err instanceof DiskFormatError)) throw err;
      if (err instanceof UnsupportedFormatError) throw err;
      problems.push(err.message.replace(`${source.name} @`, '@'));
    }
  }
  if (valid.length === 0) {
    throw new DiskFormatError(`no valid header (${problems.join('; ')})`, source.name, 'VHDX headers', HEADER_OFFSETS[0]);
  }
  warnings.push(...problems.map((p) => `ignored a damaged header: ${p}`));
  return valid.sort((a, b) => (a.sequence === b.sequence ? 0 : a.sequence > b.sequence ? -1 : 1))[0];
}

async function readRegions(source: ByteSource, warnings: string[]): Promise<Region[]> {
  const problems: string[] = [];
  for (const copy of [1, 2]) {
    try {
      const buf = await source.read(REGION_TABLE_OFFSETS[copy - 1], REGION_TABLE_SIZE, `VHDX region table ${copy}`);
      const regions = parseRegionTable(buf, copy, source.name, source.size);
      warnings.push(...problems.map((p) => `ignored a damaged region table: ${p}`));
      return regions;
    } catch (err) {
      if (!(err instanceof DiskFormatError) || err instanceof UnsupportedFormatError) throw err;
      problems.push(err.message.replace(`${source.name} @`, '@'));
    }
  }
  throw new DiskFormatError(`no valid region table (${problems.join('; ')})`, source.name, 'VHDX region table', REGION_TABLE_OFFSETS[0]);
}

async function readParameters(source: ByteSource, region: Region): Promise<VhdxParameters> {
  const table = await source.read(region.offset, METADATA_TABLE_SIZE, 'VHDX metadata table');
  const items = parseMetadataTable(table, region, source.name);
  const known = [META_FILE_PARAMETERS, META_VIRTUAL_DISK_SIZE, META_PAGE83, META_LOGICAL_SECTOR, META_PHYSICAL_SECTOR, META_PARENT_LOCATOR];
  for (const item of items) {
    if (item.required && !known.includes(item.guid)) {
      throw new UnsupportedFormatError(`unknown required metadata item ${item.guid}`, source.name, 'VHDX metadata table', region.offset);
    }
  }
  const item = async (guid: string, name: string, minLength: number, mandatory = true): Promise<Buffer | undefined> => {
    const found: MetadataItem | undefined = items.find((i) => i.guid === guid);
    if (!found) {
      if (mandatory) throw new DiskFormatError(`required item "${name}" is missing`, source.name, 'VHDX metadata table', region.offset);
      return undefined;
    }
    if (found.length < minLength) {
      throw new DiskFormatError(`item "${name}" is ${found.length} bytes, needs ${minLength}`, source.name, `VHDX metadata ${name}`, region.offset + found.offset);
    }
    return source.read(region.offset + found.offset, found.length, `VHDX metadata ${name}`);
  };
  const fp = (await item(META_FILE_PARAMETERS, 'file parameters', 8))!;
  const vs = (await item(META_VIRTUAL_DISK_SIZE, 'virtual disk size', 8))!;
  const ls = (await item(META_LOGICAL_SECTOR, 'logical sector size', 4))!;
  const ps = (await item(META_PHYSICAL_SECTOR, 'physical sector size', 4))!;
  const page83 = await item(META_PAGE83, 'page 83 data', 16, false);
  const params: VhdxParameters = {
    blockSize: fp.readUInt32LE(0),
    leaveBlocksAllocated: (fp.readUInt32LE(4) & 1) !== 0,
    hasParent: (fp.readUInt32LE(4) & 2) !== 0,
    virtualSize: Number(vs.readBigUInt64LE(0) > BigInt(MAX_VIRTUAL_SIZE) ? -1 : vs.readBigUInt64LE(0)),
    logicalSectorSize: ls.readUInt32LE(0),
    physicalSectorSize: ps.readUInt32LE(0),
    page83: page83 ? page83.toString('hex', 0, 16) : undefined,
  };
  const where = (guid: string) => region.offset + (items.find((i) => i.guid === guid)?.offset ?? 0);
  const { blockSize } = params;
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
    throw new DiskFormatError(`block size ${blockSize} is not a power of two between 1 and 256 MiB`, source.name, 'VHDX metadata file parameters', where(META_FILE_PARAMETERS));
  }
  if (params.logicalSectorSize !== 512 && params.logicalSectorSize !== 4096) {
    throw new DiskFormatError(`logical sector size ${params.logicalSectorSize} (must be 512 or 4096)`, source.name, 'VHDX metadata logical sector size', where(META_LOGICAL_SECTOR));
  }
  if (params.physicalSectorSize !== 512 && params.physicalSectorSize !== 4096) {
    throw new DiskFormatError(`physical sector size ${params.physicalSectorSize} (must be 512 or 4096)`, source.name, 'VHDX metadata physical sector size', where(META_PHYSICAL_SECTOR));
  }
  if (params.virtualSize <= 0 || params.virtualSize % params.logicalSectorSize !== 0) {
    throw new DiskFormatError(`impossible virtual size ${vs.readBigUInt64LE(0)}`, source.name, 'VHDX metadata virtual disk size', where(META_VIRTUAL_DISK_SIZE));
  }
  if (params.hasParent) {
    const loc = await item(META_PARENT_LOCATOR, 'parent locator', 20);
    params.parentLocator = parseParentLocator(loc!, source.name, where(META_PARENT_LOCATOR));
  }
  return params;
}

export async function openVhdxSource(base: ByteSource, file: string, options: VhdxOpenOptions = {}): Promise<ImageDisk> {
  const warnings: string[] = [];
  const ident = await base.read(0, 8, 'VHDX file identifier');
  if (!isVhdx(ident)) throw new DiskFormatError('bad signature (expected "vhdxfile")', base.name, 'VHDX file identifier', 0);
  const header = await readHeaders(base, warnings);
  let source = base;
  if (header.logGuid !== ZERO_GUID) {
    const replay = await replayLog(base, header);
    source = replay.source;
    warnings.push(`VHDX log is not empty: replayed ${replay.entries} entries (sequence ${replay.sequence}) in memory; the file was not changed`);
  }
  const regions = await readRegions(source, warnings);
  const bat = regions.find((r) => r.guid === REGION_BAT);
  const meta = regions.find((r) => r.guid === REGION_METADATA);
  if (!bat || !meta) throw new DiskFormatError('BAT or metadata region is missing', source.name, 'VHDX region table', REGION_TABLE_OFFSETS[0]);
  const params = await readParameters(source, meta);

  const chunkRatio = (2 ** 23 * params.logicalSectorSize) / params.blockSize;
  const payloadBlocks = Math.ceil(params.virtualSize / params.blockSize);
  const bitmapBlocks = Math.ceil(payloadBlocks / chunkRatio);
  const entries = params.hasParent ? bitmapBlocks * (chunkRatio + 1) : payloadBlocks + Math.floor((payloadBlocks - 1) / chunkRatio);
  if (entries * 8 > bat.length) {
    throw new DiskFormatError(`BAT region of ${bat.length} bytes cannot hold the ${entries} entries the disk needs`, source.name, 'VHDX BAT', bat.offset);
  }
  const table = new PagedTable(source, bat.offset, 8, entries, 'VHDX BAT');
  const map = new VhdxBlockMap(source, table, params, chunkRatio, bat.offset);

  const info: ImageInfo = {
    format: 'vhdx',
    subformat: params.hasParent ? 'differencing' : params.leaveBlocksAllocated ? 'fixed' : 'dynamic',
    virtualSize: params.virtualSize,
    allocatedBytes: await map.allocatedBytes(payloadBlocks),
    files: [path.basename(file)],
    parents: [],
    metadata: {
      blockSize: params.blockSize,
      logicalSectorSize: params.logicalSectorSize,
      physicalSectorSize: params.physicalSectorSize,
      dataWriteGuid: header.dataWriteGuid,
      fileWriteGuid: header.fileWriteGuid,
      headerSequence: header.sequence.toString(),
      ...(params.page83 ? { page83: params.page83 } : {}),
    },
    warnings,
  };
  if (info.allocatedBytes === undefined) delete info.allocatedBytes;

  let parent: ImageDisk | undefined;
  if (params.hasParent) {
    parent = await openParent(source, file, params, options.depth ?? 0);
    info.parents.push(parent.info, ...parent.info.parents);
    info.metadata.parentLinkage = params.parentLocator?.get('parent_linkage') ?? '';
  }
  return new BlockImage(params.virtualSize, map, source, parent, info);
}

const PAYLOAD = { NOT_PRESENT: 0, UNDEFINED: 1, ZERO: 2, UNMAPPED: 3, UNMAPPED_DRAFT: 5, FULLY_PRESENT: 6, PARTIALLY_PRESENT: 7 };

class VhdxBlockMap implements BlockMap {
  private readonly bitmaps = new BoundedCache<Buffer>(16);

  constructor(
    private readonly source: ByteSource,
    private readonly table: PagedTable,
    private readonly params: VhdxParameters,
    private readonly chunkRatio: number,
    private readonly batOffset: number,
  ) {}

  get blockSize(): number {
    return this.params.blockSize;
  }

  get sectorSize(): number {
    return this.params.logicalSectorSize;
  }

  /** BAT entry `index`: its state and file offset. */
  private async entry(index: number): Promise<{ state: number; offset: number }> {
    const { page, at } = await this.table.entry(index);
    const lo = page.readUInt32LE(at);
    const hi = page.readUInt32LE(at + 4);
    if (hi >= 2 ** 21) {
      throw new DiskFormatError(`entry ${index} has an impossible file offset`, this.source.name, 'VHDX BAT', this.batOffset + index * 8);
    }
    return { state: lo & 7, offset: hi * 2 ** 32 + ((lo & 0xfff00000) >>> 0) };
  }

  async allocatedBytes(blocks: number): Promise<number | undefined> {
    if (blocks > MAX_COUNTED_ENTRIES) return undefined;
    let n = 0;
    for (let b = 0; b < blocks; b++) {
      const { state } = await this.entry(b + Math.floor(b / this.chunkRatio));
      if (state === PAYLOAD.FULLY_PRESENT || state === PAYLOAD.PARTIALLY_PRESENT) n++;
    }
    return n * this.params.blockSize;
  }

  private checkInFile(index: number, offset: number, length: number): void {
    if (offset < MiB || offset + length > this.source.size) {
      throw new DiskFormatError(
        `entry ${index} points at ${offset}+${length}, outside the ${this.source.size}-byte file`,
        this.source.name, 'VHDX BAT', this.batOffset + index * 8,
      );
    }
  }

  async state(block: number): Promise<BlockState> {
    const index = block + Math.floor(block / this.chunkRatio);
    const { state, offset } = await this.entry(index);
    const blockLength = Math.min(this.params.blockSize, this.params.virtualSize - block * this.params.blockSize);
    switch (state) {
      case PAYLOAD.FULLY_PRESENT:
        this.checkInFile(index, offset, blockLength);
        return { kind: 'data', fileOffset: offset };
      case PAYLOAD.NOT_PRESENT:
        return this.params.hasParent ? { kind: 'absent' } : { kind: 'zero' };
      case PAYLOAD.UNDEFINED:
      case PAYLOAD.ZERO:
      case PAYLOAD.UNMAPPED:
      case PAYLOAD.UNMAPPED_DRAFT:
        return { kind: 'zero' };
      case PAYLOAD.PARTIALLY_PRESENT: {
        if (!this.params.hasParent) {
          throw new DiskFormatError(`entry ${index} is PARTIALLY_PRESENT in a disk without parent`, this.source.name, 'VHDX BAT', this.batOffset + index * 8);
        }
        this.checkInFile(index, offset, blockLength);
        const bitmap = await this.sectorBitmap(block);
        return { kind: 'partial', fileOffset: offset, bitmap: bufferBitmap(bitmap, false) };
      }
      default:
        throw new DiskFormatError(`entry ${index} has invalid state ${state}`, this.source.name, 'VHDX BAT', this.batOffset + index * 8);
    }
  }

  /** The part of the chunk's 1 MiB sector bitmap block that covers `block`. */
  private async sectorBitmap(block: number): Promise<Buffer> {
    const chunk = Math.floor(block / this.chunkRatio);
    const index = (chunk + 1) * (this.chunkRatio + 1) - 1;
    const whole = await this.bitmaps.get(chunk, async () => {
      const { state, offset } = await this.entry(index);
      if (state !== 6) {
        throw new DiskFormatError(`sector bitmap of chunk ${chunk} is not present (state ${state})`, this.source.name, 'VHDX BAT', this.batOffset + index * 8);
      }
      this.checkInFile(index, offset, MiB);
      return this.source.read(offset, MiB, `VHDX sector bitmap ${chunk}`);
    });
    const bytesPerBlock = this.params.blockSize / this.params.logicalSectorSize / 8;
    const start = (block % this.chunkRatio) * bytesPerBlock;
    return whole.subarray(start, start + bytesPerBlock);
  }
}

async function openParent(source: ByteSource, file: string, params: VhdxParameters, depth: number): Promise<ImageDisk> {
  if (depth + 1 > MAX_CHAIN_DEPTH) {
    throw new DiskFormatError(`parent chain is deeper than ${MAX_CHAIN_DEPTH} (a loop?)`, source.name, 'VHDX parent locator');
  }
  const loc = params.parentLocator ?? new Map<string, string>();
  const names = ['relative_path', 'volume_path', 'absolute_win32_path'].map((k) => loc.get(k)).filter((v): v is string => !!v);
  const parentFile = await findParentFile(file, names.map((n) => n.replace(/^\.[\\/]/, '')), 'VHDX parent locator');
  const parent = await openVhdx(parentFile, { depth: depth + 1 });
  const linkage = [loc.get('parent_linkage'), loc.get('parent_linkage2')].filter((v): v is string => !!v).map(normalizeGuid);
  const parentGuid = String(parent.info.metadata.dataWriteGuid);
  if (linkage.length === 0 || !linkage.includes(parentGuid)) {
    await parent.close();
    throw new DiskFormatError(
      `parent ${path.basename(parentFile)} has DataWriteGuid ${parentGuid}, this disk expects ${linkage.join(' or ') || 'none'}`,
      source.name, 'VHDX parent locator',
    );
  }
  if (parent.size !== params.virtualSize) {
    await parent.close();
    throw new DiskFormatError(`parent size ${parent.size} differs from ${params.virtualSize}`, source.name, 'VHDX parent locator');
  }
  return parent;
}
