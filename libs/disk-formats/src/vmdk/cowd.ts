import { DiskFormatError, UnsupportedFormatError } from '../errors';
import type { ByteSource } from '../source';
import { isPowerOfTwo } from './bytes';
import { GRAIN_ABSENT, GRAIN_ZERO, GrainedExtent, readU32Table } from './grained';
import { MAX_DIRECTORY_BYTES, SECTOR } from './limits';
import { MAX_GRAIN_SECTORS } from './sparse-header';

/** "COWD" read as a u32 LE. */
export const COWD_MAGIC = 0x44574f43;
export const COWD_GTES_PER_GT = 4096;
/** The COWD header occupies the first 4 sectors; the directory normally follows at sector 4. */
const COWD_HEADER_BYTES = 4 * SECTOR;

export interface CowdHeader {
  version: number;
  flags: number;
  /** Sectors. */
  capacity: number;
  grainSectors: number;
  gdOffset: number;
  gdEntries: number;
  freeSector: number;
}

/** Decodes and validates a vmfsSparse (COWD) header against its file size. */
export function parseCowdHeader(buf: Buffer, file: string, fileSize: number): CowdHeader {
  const structure = 'COWD header';
  if (buf.length < 44 || buf.readUInt32LE(0) !== COWD_MAGIC) throw new DiskFormatError('bad magic (expected COWD)', file, structure, 0);
  const h: CowdHeader = {
    version: buf.readUInt32LE(4),
    flags: buf.readUInt32LE(8),
    capacity: buf.readUInt32LE(12),
    grainSectors: buf.readUInt32LE(16),
    gdOffset: buf.readUInt32LE(20),
    gdEntries: buf.readUInt32LE(24),
    freeSector: buf.readUInt32LE(28),
  };
  if (h.version !== 1) throw new UnsupportedFormatError(`version ${h.version}`, file, structure, 4);
  if (!isPowerOfTwo(h.grainSectors) || h.grainSectors > MAX_GRAIN_SECTORS) {
    throw new DiskFormatError(`grain size ${h.grainSectors} is not a power of two up to ${MAX_GRAIN_SECTORS}`, file, structure, 16);
  }
  const needed = Math.ceil(h.capacity / (COWD_GTES_PER_GT * h.grainSectors));
  if (h.gdEntries < needed) {
    throw new DiskFormatError(`grain directory has ${h.gdEntries} entries, capacity needs ${needed}`, file, structure, 24);
  }
  if (h.gdEntries * 4 > MAX_DIRECTORY_BYTES) {
    throw new DiskFormatError(`grain directory of ${h.gdEntries} entries is too large`, file, structure, 24);
  }
  if (h.gdOffset * SECTOR < headerBytes(h)) throw new DiskFormatError('grain directory overlaps the header', file, structure, 20);
  if (h.gdOffset * SECTOR + needed * 4 > fileSize) {
    throw new DiskFormatError(`grain directory at sector ${h.gdOffset} lies past the end of the file`, file, structure, 20);
  }
  return h;
}

function headerBytes(h: CowdHeader): number {
  return h.gdOffset >= 4 ? COWD_HEADER_BYTES : SECTOR;
}

/**
 * An ESXi vmfsSparse delta (COWD): u32 directory of u32 grain tables of 4096 entries, grains of (usually) one
 * sector. Entry 0 = not in this delta (parent); entry 1 is read as a zero grain (it cannot address data: sector 1
 * lies inside the header) ⚠.
 */
export class CowdExtent extends GrainedExtent {
  readonly files: string[];

  private constructor(src: ByteSource, length: number, readonly header: CowdHeader, private readonly directory: Uint32Array) {
    super(src, length, header.grainSectors * SECTOR, COWD_GTES_PER_GT, directory.length, false);
    this.files = [src.name];
  }

  static async open(src: ByteSource, length?: number): Promise<CowdExtent> {
    const header = parseCowdHeader(await src.read(0, SECTOR, 'COWD header'), src.name, src.size);
    const capacityBytes = header.capacity * SECTOR;
    if (length !== undefined && length > capacityBytes) {
      throw new DiskFormatError(`descriptor gives ${length / SECTOR} sectors, the delta holds ${header.capacity}`, src.name, 'COWD header', 12);
    }
    const entries = Math.ceil(header.capacity / (COWD_GTES_PER_GT * header.grainSectors));
    const start = header.gdOffset * SECTOR;
    const directory = await readU32Table(src, start, entries, 'grain directory');
    const tableBytes = COWD_GTES_PER_GT * 4;
    directory.forEach((gt, i) => {
      if (gt === 0) return;
      if (gt * SECTOR < headerBytes(header) || gt * SECTOR + tableBytes > src.size) {
        throw new DiskFormatError(`entry ${i}: grain table at sector ${gt} is outside the file's tables`, src.name, 'grain directory', start + i * 4);
      }
    });
    return new CowdExtent(src, length ?? capacityBytes, header, directory);
  }

  protected async loadTable(index: number): Promise<Float64Array | null> {
    const sector = this.directory[index];
    if (sector === 0) return null;
    const structure = `grain table ${index}`;
    const tableOffset = sector * SECTOR;
    const raw = await readU32Table(this.src, tableOffset, COWD_GTES_PER_GT, structure);
    const out = new Float64Array(COWD_GTES_PER_GT);
    for (let i = 0; i < COWD_GTES_PER_GT; i++) {
      const grain = index * COWD_GTES_PER_GT + i;
      const value = raw[i];
      if (value === 0 || grain * this.grainBytes >= this.length) out[i] = GRAIN_ABSENT;
      else if (value === 1) out[i] = GRAIN_ZERO;
      else {
        const at = value * SECTOR;
        if (at < headerBytes(this.header)) {
          throw new DiskFormatError(`entry ${i} points into the header (sector ${value})`, this.src.name, structure, tableOffset + i * 4);
        }
        if (at + this.grainExtent(grain) > this.src.size) {
          throw new DiskFormatError(`entry ${i} points past the end of the file (sector ${value})`, this.src.name, structure, tableOffset + i * 4);
        }
        out[i] = at;
      }
    }
    return out;
  }
}
