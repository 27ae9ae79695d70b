import { inflate } from 'node:zlib';
import { promisify } from 'node:util';
import { DiskFormatError } from '../errors';
import type { ByteSource } from '../source';
import { GRAIN_ABSENT, GRAIN_ZERO, GrainedExtent, readU32Table } from './grained';
import { MAX_DIRECTORY_BYTES, SECTOR } from './limits';
import {
  FLAG_COMPRESSED, FLAG_REDUNDANT_GD, FLAG_ZERO_GRAIN, GD_AT_END, GTES_PER_GT, directoryEntries, grainBytes,
  parseSparseHeader, type SparseHeader,
} from './sparse-header';

const inflateAsync = promisify(inflate);
/** Marker types of streamOptimized files. */
export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;
/** u64 lba + u32 size in front of each compressed grain. */
const GRAIN_MARKER_BYTES = 12;

interface Range {
  start: number;
  end: number;
  what: string;
}

/**
 * A hosted sparse extent (KDMV, versions 1–3): monolithicSparse, twoGbMaxExtentSparse pieces and
 * streamOptimized in both layouts (directory at the front, or GD_AT_END with the footer near the end).
 */
export class HostedSparseExtent extends GrainedExtent {
  readonly files: string[];

  private constructor(
    src: ByteSource,
    length: number,
    readonly header: SparseHeader,
    /** The header first read from sector 0 (differs from `header` for GD_AT_END streams). */
    readonly firstHeader: SparseHeader,
    private readonly directory: Uint32Array,
    private readonly reserved: Range[],
    readonly warnings: string[],
  ) {
    super(src, length, grainBytes(header), GTES_PER_GT, directory.length, (header.flags & FLAG_COMPRESSED) !== 0);
    this.files = [src.name];
  }

  /** Reads the header (sector 0) only: used to find an embedded descriptor before the extent is opened. */
  static async readHeader(src: ByteSource): Promise<SparseHeader> {
    return parseSparseHeader(await src.read(0, SECTOR, 'sparse header'), src.name, src.size);
  }

  /**
   * Opens the extent. `length` is the extent size from the descriptor in bytes (default: the capacity); it may
   * not exceed the capacity.
   */
  static async open(src: ByteSource, length?: number): Promise<HostedSparseExtent> {
    const first = await HostedSparseExtent.readHeader(src);
    const header = first.gdOffset === GD_AT_END ? await readFooter(src) : first;
    const capacityBytes = header.capacity * SECTOR;
    const extentLength = length ?? capacityBytes;
    if (extentLength > capacityBytes) {
      throw new DiskFormatError(
        `descriptor gives the extent ${extentLength / SECTOR} sectors but its capacity is ${header.capacity}`,
        src.name, 'sparse header', 12,
      );
    }
    const reserved: Range[] = [{ start: 0, end: SECTOR, what: 'the header' }];
    if (first.descriptorOffset) {
      reserved.push({
        start: first.descriptorOffset * SECTOR,
        end: (first.descriptorOffset + first.descriptorSectors) * SECTOR,
        what: 'the embedded descriptor',
      });
    }
    const warnings: string[] = [];
    const directory = await loadDirectory(src, header, reserved, warnings);
    if (first.uncleanShutdown) warnings.push('the disk was not closed cleanly (uncleanShutdown is set)');
    return new HostedSparseExtent(src, extentLength, header, first, directory, reserved, warnings);
  }

  protected async loadTable(index: number): Promise<Float64Array | null> {
    const sector = this.directory[index];
    if (sector === 0) return null;
    const structure = `grain table ${index}`;
    const tableOffset = sector * SECTOR;
    const raw = await readU32Table(this.src, tableOffset, GTES_PER_GT, structure);
    const zeroGrains = (this.header.flags & FLAG_ZERO_GRAIN) !== 0;
    const out = new Float64Array(GTES_PER_GT);
    for (let i = 0; i < GTES_PER_GT; i++) {
      const grain = index * GTES_PER_GT + i;
      const value = raw[i];
      if (grain * this.grainBytes >= this.length) {
        out[i] = GRAIN_ABSENT;
        continue;
      }
      if (value === 0) out[i] = GRAIN_ABSENT;
      else if (value === 1 && zeroGrains) out[i] = GRAIN_ZERO;
      else {
        const at = value * SECTOR;
        const need = this.compressed ? GRAIN_MARKER_BYTES : this.grainExtent(grain);
        if (at + need > this.src.size) {
          throw new DiskFormatError(`entry ${i} points past the end of the file (sector ${value})`, this.src.name, structure, tableOffset + i * 4);
        }
        const hit = overlapping(this.reserved, at, at + need);
        if (hit) throw new DiskFormatError(`entry ${i} points into ${hit.what}`, this.src.name, structure, tableOffset + i * 4);
        out[i] = at;
      }
    }
    return out;
  }

  protected override async inflateGrain(grain: number, fileOffset: number): Promise<Buffer> {
    const structure = `compressed grain ${grain}`;
    const expected = this.grainExtent(grain);
    const guess = Math.min(this.src.size - fileOffset, GRAIN_MARKER_BYTES + this.grainBytes + 1024);
    let buf = await this.src.read(fileOffset, guess, structure);
    const lba = buf.readUInt32LE(0) + buf.readUInt32LE(4) * 2 ** 32;
    const size = buf.readUInt32LE(8);
    const grainSector = (grain * this.grainBytes) / SECTOR;
    if (lba !== grainSector) {
      throw new DiskFormatError(`grain marker names sector ${lba}, expected ${grainSector}`, this.src.name, structure, fileOffset);
    }
    if (size === 0 || size > 2 * this.grainBytes + 1024) {
      throw new DiskFormatError(`compressed size ${size} is impossible`, this.src.name, structure, fileOffset + 8);
    }
    if (fileOffset + GRAIN_MARKER_BYTES + size > this.src.size) {
      throw new DiskFormatError(`compressed grain of ${size} bytes runs past the end of the file`, this.src.name, structure, fileOffset);
    }
    if (GRAIN_MARKER_BYTES + size > buf.length) buf = await this.src.read(fileOffset, GRAIN_MARKER_BYTES + size, structure);
    let data: Buffer;
    try {
      data = await inflateAsync(buf.subarray(GRAIN_MARKER_BYTES, GRAIN_MARKER_BYTES + size), { maxOutputLength: this.grainBytes });
    } catch (err) {
      throw new DiskFormatError(`corrupt deflate stream (${(err as Error).message})`, this.src.name, structure, fileOffset + GRAIN_MARKER_BYTES);
    }
    // A full grain, or for the last grain of the disk the part up to the capacity.
    if (data.length !== this.grainBytes && data.length !== expected) {
      throw new DiskFormatError(`grain inflates to ${data.length} bytes, expected ${expected}`, this.src.name, structure, fileOffset);
    }
    if (data.length < this.grainBytes) {
      const full = Buffer.alloc(this.grainBytes);
      data.copy(full);
      return full;
    }
    return data;
  }
}

function overlapping(ranges: Range[], start: number, end: number): Range | undefined {
  return ranges.find((r) => start < r.end && r.start < end);
}

/** GD_AT_END: footer marker, footer (a header with the real gdOffset), end-of-stream marker in the last 1536 bytes. */
async function readFooter(src: ByteSource): Promise<SparseHeader> {
  const at = src.size - 3 * SECTOR;
  if (at < SECTOR) throw new DiskFormatError('file too short for a stream footer', src.name, 'stream footer', 0);
  const buf = await src.read(at, 3 * SECTOR, 'stream footer');
  if (buf.readUInt32LE(8) !== 0 || buf.readUInt32LE(12) !== MARKER_FOOTER) {
    throw new DiskFormatError('no footer marker before the footer', src.name, 'stream footer marker', at);
  }
  const eos = buf.subarray(2 * SECTOR);
  if (eos.readUInt32LE(8) !== 0 || eos.readUInt32LE(12) !== MARKER_EOS) {
    throw new DiskFormatError('no end-of-stream marker after the footer', src.name, 'end-of-stream marker', at + 2 * SECTOR);
  }
  const footer = parseSparseHeader(buf.subarray(SECTOR, 2 * SECTOR), src.name, src.size, at + SECTOR, 'stream footer');
  if (footer.gdOffset === GD_AT_END) {
    throw new DiskFormatError('footer does not give the grain directory offset', src.name, 'stream footer', at + SECTOR + 56);
  }
  return footer;
}

async function readDirectoryAt(
  src: ByteSource, sector: number, entries: number, reserved: Range[], structure: string,
): Promise<Uint32Array> {
  const bytes = entries * 4;
  const start = sector * SECTOR;
  if (sector === 0 || sector === GD_AT_END) {
    throw new DiskFormatError(`offset ${sector} overlaps the header`, src.name, structure, 0);
  }
  if (start + bytes > src.size) {
    throw new DiskFormatError(`lies past the end of the file (sector ${sector}, ${entries} entries)`, src.name, structure, start);
  }
  const hit = overlapping(reserved, start, start + bytes);
  if (hit) throw new DiskFormatError(`overlaps ${hit.what}`, src.name, structure, start);
  const dir = await readU32Table(src, start, entries, structure);
  for (let i = 0; i < entries; i++) {
    const gt = dir[i];
    if (gt === 0) continue;
    const gtStart = gt * SECTOR;
    if (gtStart + GTES_PER_GT * 4 > src.size) {
      throw new DiskFormatError(`entry ${i}: grain table at sector ${gt} lies past the end of the file`, src.name, structure, start + i * 4);
    }
    const gtHit = overlapping(reserved, gtStart, gtStart + GTES_PER_GT * 4);
    if (gtHit) throw new DiskFormatError(`entry ${i}: grain table overlaps ${gtHit.what}`, src.name, structure, start + i * 4);
  }
  return dir;
}

/** Loads and checks the grain directory; falls back to the redundant one (flag 0x2) if the primary is bad. */
async function loadDirectory(src: ByteSource, h: SparseHeader, reserved: Range[], warnings: string[]): Promise<Uint32Array> {
  const entries = directoryEntries(h);
  if (entries * 4 > MAX_DIRECTORY_BYTES) {
    throw new DiskFormatError(`grain directory of ${entries} entries is too large`, src.name, 'sparse header', 12);
  }
  try {
    return await readDirectoryAt(src, h.gdOffset, entries, reserved, 'grain directory');
  } catch (primaryError) {
    if (!(primaryError instanceof DiskFormatError) || !(h.flags & FLAG_REDUNDANT_GD) || h.rgdOffset === 0) throw primaryError;
    try {
      const dir = await readDirectoryAt(src, h.rgdOffset, entries, reserved, 'redundant grain directory');
      warnings.push(`primary grain directory is damaged (${primaryError.message}); using the redundant one`);
      return dir;
    } catch {
      throw primaryError;
    }
  }
}
