/**
 * VHD reader: fixed (raw data + footer), dynamic (BAT of 512-byte-sector offsets; each block is a sector
 * bitmap then data) and differencing (the bitmap decides, per sector, between this file and the parent,
 * found through the parent locators and checked by unique id).
 */
import * as path from 'node:path';
import { DiskFormatError } from '../errors';
import { SourceDisk } from '../raw';
import { ByteSource, FileSource } from '../source';
import type { ImageDisk, ImageInfo } from '../types';
import { BlockImage, BlockMap, BlockState, BoundedCache, bufferBitmap, MAX_CHAIN_DEPTH, PagedTable } from './block-image';
import { findParentFile } from './parent';
import {
  DYNAMIC_HEADER_SIZE,
  FOOTER_SIZE,
  isVhdFooter,
  parseDynamicHeader,
  parseFooter,
  VhdDynamicHeader,
  VhdFooter,
  VhdType,
} from './structures';

export * from './structures';

const UNALLOCATED = 0xffffffff;
/** Work bound for the allocated-bytes count shown in info. */
const MAX_COUNTED_ENTRIES = 4 * 1024 * 1024;

export interface VhdOpenOptions {
  /** Parent chain depth so far (internal: stops loops). */
  depth?: number;
}

export async function openVhd(file: string, options: VhdOpenOptions = {}): Promise<ImageDisk> {
  const source = await FileSource.open(file);
  try {
    return await openVhdSource(source, file, options);
  } catch (err) {
    await source.close();
    throw err;
  }
}

/** Reads the footer at the end (falls back to the copy at offset 0 of dynamic disks when the end is damaged). */
async function readFooter(source: ByteSource, warnings: string[]): Promise<VhdFooter> {
  if (source.size < FOOTER_SIZE) throw new DiskFormatError('file is too small for a VHD footer', source.name, 'VHD footer', 0);
  const endAt = source.size - FOOTER_SIZE;
  const end = await source.read(endAt, FOOTER_SIZE, 'VHD footer');
  try {
    return parseFooter(end, source.name, endAt);
  } catch (err) {
    const head = await source.read(0, FOOTER_SIZE, 'VHD footer copy');
    if (endAt === 0 || !isVhdFooter(head)) throw err;
    const copy = parseFooter(head, source.name, 0);
    if (copy.type === VhdType.Fixed) throw err;
    warnings.push(`the footer at the end is damaged (${(err as Error).message}); using its copy at offset 0`);
    return copy;
  }
}

export async function openVhdSource(source: ByteSource, file: string, options: VhdOpenOptions = {}): Promise<ImageDisk> {
  const warnings: string[] = [];
  const footer = await readFooter(source, warnings);
  const info: ImageInfo = {
    format: 'vhd',
    subformat: footer.type === VhdType.Fixed ? 'fixed' : footer.type === VhdType.Dynamic ? 'dynamic' : 'differencing',
    virtualSize: footer.currentSize,
    files: [path.basename(file)],
    parents: [],
    metadata: {
      uniqueId: footer.uniqueId,
      creatorApp: footer.creatorApp,
      creatorVersion: `${footer.creatorVersion >>> 16}.${footer.creatorVersion & 0xffff}`,
      creatorHostOs: footer.creatorHostOs,
      cylinders: footer.geometry.cylinders,
      heads: footer.geometry.heads,
      sectorsPerTrack: footer.geometry.sectors,
      savedState: footer.savedState,
    },
    warnings,
  };
  if (footer.savedState) info.warnings.push('the VHD is marked as being in a saved state');

  if (footer.type === VhdType.Fixed) {
    if (source.size - FOOTER_SIZE < footer.currentSize) {
      throw new DiskFormatError(
        `fixed disk of ${footer.currentSize} bytes needs ${footer.currentSize + FOOTER_SIZE} bytes of file, has ${source.size}`,
        source.name, 'VHD footer', source.size - FOOTER_SIZE,
      );
    }
    info.allocatedBytes = footer.currentSize;
    return new SourceDisk(source, 0, footer.currentSize, info);
  }

  if (footer.dataOffset === null || footer.dataOffset + DYNAMIC_HEADER_SIZE > source.size - FOOTER_SIZE) {
    throw new DiskFormatError(`dynamic header offset ${footer.dataOffset} is outside the file`, source.name, 'VHD footer', 16);
  }
  const header = parseDynamicHeader(
    await source.read(footer.dataOffset, DYNAMIC_HEADER_SIZE, 'VHD dynamic header'),
    source.name,
    footer.dataOffset,
  );
  const blocks = Math.ceil(footer.currentSize / header.blockSize);
  if (header.maxTableEntries < blocks) {
    throw new DiskFormatError(
      `BAT has ${header.maxTableEntries} entries, the ${footer.currentSize}-byte disk needs ${blocks}`,
      source.name, 'VHD dynamic header', footer.dataOffset + 28,
    );
  }
  if (header.tableOffset + blocks * 4 > source.size) {
    throw new DiskFormatError(`BAT of ${blocks} entries at ${header.tableOffset} runs past the end of the file`, source.name, 'VHD BAT', header.tableOffset);
  }
  info.metadata.blockSize = header.blockSize;

  const table = new PagedTable(source, header.tableOffset, 4, blocks, 'VHD BAT');
  const differencing = footer.type === VhdType.Differencing;
  const map = new VhdBlockMap(source, table, header, differencing);
  info.allocatedBytes = await map.allocatedBytes(blocks);

  let parent: ImageDisk | undefined;
  if (differencing) {
    parent = await openParent(source, file, footer, header, options.depth ?? 0);
    info.parents.push(parent.info, ...parent.info.parents);
    info.metadata.parentUniqueId = header.parentUniqueId;
  }
  try {
    return new BlockImage(footer.currentSize, map, source, parent, info);
  } catch (err) {
    await parent?.close();
    throw err;
  }
}

class VhdBlockMap implements BlockMap {
  readonly sectorSize = 512;
  private readonly bitmapBytes: number;
  private readonly bitmaps = new BoundedCache<Buffer>(256);

  constructor(
    private readonly source: ByteSource,
    private readonly table: PagedTable,
    private readonly header: VhdDynamicHeader,
    private readonly differencing: boolean,
  ) {
    this.bitmapBytes = Math.ceil(header.blockSize / 512 / 8 / 512) * 512;
  }

  get blockSize(): number {
    return this.header.blockSize;
  }

  private async sector(block: number): Promise<number> {
    const { page, at } = await this.table.entry(block);
    return page.readUInt32BE(at);
  }

  async allocatedBytes(blocks: number): Promise<number | undefined> {
    if (blocks > MAX_COUNTED_ENTRIES) return undefined;
    let n = 0;
    for (let b = 0; b < blocks; b++) if ((await this.sector(b)) !== UNALLOCATED) n++;
    return n * this.header.blockSize;
  }

  async state(block: number): Promise<BlockState> {
    const sector = await this.sector(block);
    if (sector === UNALLOCATED) return { kind: 'absent' };
    const bitmapAt = sector * 512;
    const fileOffset = bitmapAt + this.bitmapBytes;
    if (fileOffset + this.header.blockSize > this.source.size - FOOTER_SIZE) {
      throw new DiskFormatError(
        `BAT entry ${block} points past the end of the file (block at ${bitmapAt})`,
        this.source.name, 'VHD BAT', this.header.tableOffset + block * 4,
      );
    }
    // Dynamic disks: an allocated block is data (its bitmap only records which sectors were written, and
    // unwritten sectors hold zeros). Differencing disks: the bitmap picks this file or the parent per sector.
    if (!this.differencing) return { kind: 'data', fileOffset };
    const bits = await this.bitmaps.get(block, () => this.source.read(bitmapAt, this.bitmapBytes, `VHD block ${block} bitmap`));
    const used = this.header.blockSize / 512 / 8;
    if (bits.subarray(0, used).every((b) => b === 0xff)) return { kind: 'data', fileOffset };
    return { kind: 'partial', fileOffset, bitmap: bufferBitmap(bits, true) };
  }
}

async function openParent(source: ByteSource, file: string, footer: VhdFooter, header: VhdDynamicHeader, depth: number): Promise<ImageDisk> {
  if (depth + 1 > MAX_CHAIN_DEPTH) {
    throw new DiskFormatError(`parent chain is deeper than ${MAX_CHAIN_DEPTH} (a loop?)`, source.name, 'VHD parent');
  }
  const names: string[] = [];
  // Relative Windows path first, then the recorded parent name, then absolute paths (by base name only).
  const order = ['W2ru', 'Wi2r', 'MacX', 'W2ku', 'Wi2k'];
  const sorted = [...header.locators].sort((a, b) => rank(order, a.platform) - rank(order, b.platform));
  for (const loc of sorted) {
    if (loc.dataLength === 0 || loc.dataLength > 4096 || loc.dataOffset < 0) continue;
    if (loc.dataOffset + loc.dataLength > source.size) {
      throw new DiskFormatError(`parent locator "${loc.platform}" points past the end of the file`, source.name, 'VHD parent locator', loc.dataOffset);
    }
    const raw = await source.read(loc.dataOffset, loc.dataLength, 'VHD parent locator');
    if (loc.platform === 'W2ru' || loc.platform === 'W2ku') names.push(raw.toString('utf16le'));
    else if (loc.platform === 'MacX') names.push(decodeURIComponent(raw.toString('utf8').replace(/^file:\/\//, '')));
    else names.push(raw.toString('latin1'));
  }
  if (!names.includes(header.parentName)) names.push(header.parentName);
  const parentFile = await findParentFile(file, names.map((n) => n.replace(/^\.[\\/]/, '')), 'VHD parent');
  const parent = await openVhd(parentFile, { depth: depth + 1 });
  const parentId = String(parent.info.metadata.uniqueId);
  if (parentId !== header.parentUniqueId) {
    await parent.close();
    throw new DiskFormatError(
      `parent ${path.basename(parentFile)} has unique id ${parentId}, this disk expects ${header.parentUniqueId}`,
      source.name, 'VHD dynamic header', (footer.dataOffset ?? 0) + 40,
    );
  }
  if (parent.size !== footer.currentSize) {
    await parent.close();
    throw new DiskFormatError(`parent size ${parent.size} differs from ${footer.currentSize}`, source.name, 'VHD parent');
  }
  return parent;
}

function rank(order: string[], platform: string): number {
  const i = order.indexOf(platform);
  return i < 0 ? order.length : i;
}

