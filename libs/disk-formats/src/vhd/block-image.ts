/**
 * Shared reading core of the block-based formats (VHD dynamic/differencing, VHDX): the virtual disk is cut
 * into equal blocks; each block is in this file, all zeros, absent (read from the parent, or zeros without
 * one) or partly present (a sector bitmap says, per sector, whether this file or the parent holds it).
 * Format modules only decode their tables into BlockState; reading, parent fall-through and extents live here.
 */
import { checkRange, Extent } from '@vmkeep/disk';
import { DiskFormatError } from '../errors';
import type { ByteSource } from '../source';
import type { ImageDisk, ImageInfo } from '../types';

export type BlockState =
  | { kind: 'data'; fileOffset: number }
  | { kind: 'zero' }
  | { kind: 'absent' }
  | { kind: 'partial'; fileOffset: number; bitmap: SectorBitmap };

/** Which sectors of one block this file holds. */
export interface SectorBitmap {
  has(sector: number): boolean;
}

/** Bitmap over a buffer; VHD numbers bits from the most significant bit of each byte, VHDX from the least. */
export function bufferBitmap(bits: Buffer, msbFirst: boolean): SectorBitmap {
  return {
    has(sector: number): boolean {
      const byte = bits[sector >> 3] ?? 0;
      return (byte & (msbFirst ? 0x80 >> (sector & 7) : 1 << (sector & 7))) !== 0;
    },
  };
}

export interface BlockMap {
  readonly blockSize: number;
  /** Granularity of partial blocks' bitmaps. */
  readonly sectorSize: number;
  state(block: number): Promise<BlockState>;
}

function zeros(length: number): Buffer {
  return Buffer.alloc(length);
}

/** Appends a range to a sorted list, merging it with the last one when they touch or overlap. */
function pushExtent(out: Extent[], e: Extent): void {
  if (e.length <= 0) return;
  const last = out[out.length - 1];
  if (last && e.offset <= last.offset + last.length) {
    last.length = Math.max(last.length, e.offset + e.length - last.offset);
  } else {
    out.push({ offset: e.offset, length: e.length });
  }
}

/** Merges ranges sorted by offset. */
export function mergeExtents(list: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of list) pushExtent(out, e);
  return out;
}

export class BlockImage implements ImageDisk {
  private closed = false;

  constructor(
    readonly size: number,
    private readonly map: BlockMap,
    private readonly source: ByteSource,
    private readonly parent: ImageDisk | undefined,
    readonly info: ImageInfo,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source.name, offset, length);
    if (this.closed) throw new DiskFormatError('image is closed', this.source.name, 'disk');
    const parts: Buffer[] = [];
    const { blockSize } = this.map;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const block = Math.floor(pos / blockSize);
      const inBlock = pos - block * blockSize;
      const take = Math.min(end - pos, blockSize - inBlock);
      const state = await this.map.state(block);
      parts.push(await this.readPiece(state, pos, inBlock, take, `block ${block}`));
      pos += take;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, length);
  }

  private async readPiece(state: BlockState, pos: number, inBlock: number, take: number, structure: string): Promise<Buffer> {
    switch (state.kind) {
      case 'data':
        return this.source.read(state.fileOffset + inBlock, take, structure);
      case 'zero':
        return zeros(take);
      case 'absent':
        return this.parent ? this.parent.read(pos, take) : zeros(take);
      case 'partial': {
        // Runs of sectors with the same owner are read in one go.
        const sector = this.map.sectorSize;
        const out: Buffer[] = [];
        let at = inBlock;
        const stop = inBlock + take;
        while (at < stop) {
          const mine = state.bitmap.has(Math.floor(at / sector));
          let runEnd = Math.min(stop, (Math.floor(at / sector) + 1) * sector);
          while (runEnd < stop && state.bitmap.has(Math.floor(runEnd / sector)) === mine) {
            runEnd = Math.min(stop, runEnd + sector);
          }
          const n = runEnd - at;
          if (mine) out.push(await this.source.read(state.fileOffset + at, n, structure));
          else out.push(this.parent ? await this.parent.read(pos + (at - inBlock), n) : zeros(n));
          at = runEnd;
        }
        return Buffer.concat(out, take);
      }
    }
  }

  async extents(): Promise<Extent[]> {
    const { blockSize } = this.map;
    const count = Math.ceil(this.size / blockSize);
    const own: Extent[] = [];
    const fromParent: Extent[] = [];
    for (let block = 0; block < count; block++) {
      const state = await this.map.state(block);
      const e = { offset: block * blockSize, length: Math.min(blockSize, this.size - block * blockSize) };
      if (state.kind === 'data' || state.kind === 'partial') pushExtent(own, e);
      if ((state.kind === 'absent' || state.kind === 'partial') && this.parent) pushExtent(fromParent, e);
    }
    const windows = fromParent;
    if (windows.length === 0) return own;
    const parentExtents = await this.parent!.extents();
    const clipped: Extent[] = [];
    let w = 0;
    for (const p of parentExtents) {
      while (w < windows.length && windows[w].offset + windows[w].length <= p.offset) w++;
      for (let i = w; i < windows.length && windows[i].offset < p.offset + p.length; i++) {
        const start = Math.max(p.offset, windows[i].offset);
        const stop = Math.min(p.offset + p.length, windows[i].offset + windows[i].length, this.size);
        if (stop > start) clipped.push({ offset: start, length: stop - start });
      }
    }
    const all = [...own, ...clipped].sort((a, b) => a.offset - b.offset);
    return mergeExtents(all);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.source.close();
    } finally {
      await this.parent?.close();
    }
  }
}

/**
 * A table of fixed-size entries (BAT) read lazily in pages with a bounded cache, so a header claiming a
 * huge disk never makes us hold its whole table.
 */
export class PagedTable {
  private readonly cache = new Map<number, Buffer>();
  private static readonly ENTRIES_PER_PAGE = 4096;
  private static readonly MAX_PAGES = 64;

  constructor(
    private readonly source: ByteSource,
    private readonly offset: number,
    private readonly entrySize: number,
    readonly count: number,
    private readonly structure: string,
  ) {}

  /** The page holding entry `index` and the entry's byte position in it. */
  async entry(index: number): Promise<{ page: Buffer; at: number }> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.count) {
      throw new DiskFormatError(`entry ${index} is outside the table (${this.count} entries)`, this.source.name, this.structure);
    }
    const pageNo = Math.floor(index / PagedTable.ENTRIES_PER_PAGE);
    let page = this.cache.get(pageNo);
    if (page) {
      this.cache.delete(pageNo);
    } else {
      const first = pageNo * PagedTable.ENTRIES_PER_PAGE;
      const n = Math.min(PagedTable.ENTRIES_PER_PAGE, this.count - first);
      page = await this.source.read(this.offset + first * this.entrySize, n * this.entrySize, this.structure);
      if (this.cache.size >= PagedTable.MAX_PAGES) this.cache.delete(this.cache.keys().next().value as number);
    }
    this.cache.set(pageNo, page);
    return { page, at: (index % PagedTable.ENTRIES_PER_PAGE) * this.entrySize };
  }
}

/** A small bounded cache for per-block data (sector bitmaps). */
export class BoundedCache<V> {
  private readonly map = new Map<number, V>();
  constructor(private readonly max: number) {}
  async get(key: number, load: () => Promise<V>): Promise<V> {
    const hit = this.map.get(key);
    if (hit !== undefined) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    const value = await load();
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as number);
    this.map.set(key, value);
    return value;
  }
}

/** Longest parent chain followed (differencing disks): deeper means a loop or a hostile image. */
export const MAX_CHAIN_DEPTH = 32;
