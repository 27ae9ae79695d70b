import { DiskFormatError, UnsupportedFormatError } from '../errors';
import type { ByteSource } from '../source';
import { readU64 } from './bytes';
import { GRAIN_ABSENT, GRAIN_ZERO, GrainedExtent } from './grained';
import { MAX_DIRECTORY_BYTES, MAX_VIRTUAL_BYTES, SECTOR } from './limits';

export const SESPARSE_MAGIC = 0xcafebabe;
export const SESPARSE_VOLATILE_MAGIC = 0xcafecafe;
export const SESPARSE_VERSION = 0x200000001;
export const SESPARSE_GRAIN_SECTORS = 8;
export const SESPARSE_TABLE_SECTORS = 64;
export const SESPARSE_GTES_PER_GT = (SESPARSE_TABLE_SECTORS * SECTOR) / 8;
const GD_ALLOCATED = 0x10000000;

/** Fields of the seSparse constant header; offsets and sizes are in sectors. */
export interface SeSparseHeader {
  capacity: number;
  grainSectors: number;
  tableSectors: number;
  flags: number;
  volatileHeader: { offset: number; size: number };
  journalHeader: { offset: number; size: number };
  journal: { offset: number; size: number };
  grainDirectory: { offset: number; size: number };
  grainTables: { offset: number; size: number };
  freeBitmap: { offset: number; size: number };
  backmap: { offset: number; size: number };
  grains: { offset: number; size: number };
}

const REGIONS = ['volatileHeader', 'journalHeader', 'journal', 'grainDirectory', 'grainTables', 'freeBitmap', 'backmap', 'grains'] as const;

/** Decodes and validates an seSparse constant header against its file size. */
export function parseSeSparseHeader(buf: Buffer, file: string, fileSize: number): SeSparseHeader {
  const structure = 'seSparse header';
  const field = (at: number, name: string): number => {
    const v = readU64(buf, at);
    if (!Number.isSafeInteger(v)) throw new DiskFormatError(`${name} is absurd`, file, structure, at);
    return v;
  };
  if (buf.length < SECTOR || readU64(buf, 0) !== SESPARSE_MAGIC) throw new DiskFormatError('bad magic (expected 0xCAFEBABE)', file, structure, 0);
  if (readU64(buf, 8) !== SESPARSE_VERSION) throw new UnsupportedFormatError('unknown version', file, structure, 8);
  const fileSectors = Math.floor(fileSize / SECTOR);
  const region = (i: number, name: string): { offset: number; size: number } => {
    const at = 80 + i * 16;
    const r = { offset: field(at, `${name} offset`), size: field(at + 8, `${name} size`) };
    const end = name === 'grains' ? r.offset : r.offset + r.size;
    if (r.offset < 1 || end > fileSectors) throw new DiskFormatError(`${name} region lies outside the file`, file, structure, at);
    return r;
  };
  const h = {
    capacity: field(16, 'capacity'),
    grainSectors: field(24, 'grain size'),
    tableSectors: field(32, 'grain table size'),
    flags: field(40, 'flags'),
  } as SeSparseHeader;
  if (h.capacity * SECTOR > MAX_VIRTUAL_BYTES) throw new DiskFormatError(`capacity of ${h.capacity} sectors is absurd`, file, structure, 16);
  if (h.grainSectors !== SESPARSE_GRAIN_SECTORS) throw new UnsupportedFormatError(`grain size ${h.grainSectors}`, file, structure, 24);
  if (h.tableSectors !== SESPARSE_TABLE_SECTORS) throw new UnsupportedFormatError(`grain table size ${h.tableSectors}`, file, structure, 32);
  if (h.flags !== 0) throw new UnsupportedFormatError(`flags 0x${h.flags.toString(16)}`, file, structure, 40);
  REGIONS.forEach((name, i) => {
    h[name] = region(i, name);
  });
  const needed = Math.ceil(h.capacity / (SESPARSE_GTES_PER_GT * SESPARSE_GRAIN_SECTORS));
  if (needed * 8 > h.grainDirectory.size * SECTOR) {
    throw new DiskFormatError(`grain directory of ${h.grainDirectory.size} sectors is too small for the capacity`, file, structure, 136);
  }
  if (needed * 8 > MAX_DIRECTORY_BYTES) throw new DiskFormatError('grain directory is too large', file, structure, 136);
  return h;
}

/**
 * An ESXi seSparse delta: u64 directory entries (0x10000000 << 32 | table index), u64 grain table entries whose
 * top nibble says unallocated (parent) / unmapped / zero / allocated, 4 KiB grains.
 */
export class SeSparseExtent extends GrainedExtent {
  readonly files: string[];

  private constructor(src: ByteSource, length: number, readonly header: SeSparseHeader, private readonly directory: Float64Array) {
    super(src, length, SESPARSE_GRAIN_SECTORS * SECTOR, SESPARSE_GTES_PER_GT, directory.length, false);
    this.files = [src.name];
  }

  static async open(src: ByteSource, length?: number): Promise<SeSparseExtent> {
    const header = parseSeSparseHeader(await src.read(0, SECTOR, 'seSparse header'), src.name, src.size);
    const capacityBytes = header.capacity * SECTOR;
    if (length !== undefined && length > capacityBytes) {
      throw new DiskFormatError(`descriptor gives ${length / SECTOR} sectors, the delta holds ${header.capacity}`, src.name, 'seSparse header', 16);
    }
    const volatileAt = header.volatileHeader.offset * SECTOR;
    const volatile = await src.read(volatileAt, SECTOR, 'seSparse volatile header');
    if (readU64(volatile, 0) !== SESPARSE_VOLATILE_MAGIC) {
      throw new DiskFormatError('bad magic (expected 0xCAFECAFE)', src.name, 'seSparse volatile header', volatileAt);
    }
    if (readU64(volatile, 24) !== 0) {
      throw new DiskFormatError('the journal needs replaying (disk was not closed cleanly)', src.name, 'seSparse volatile header', volatileAt + 24);
    }
    const entries = Math.ceil(header.capacity / (SESPARSE_GTES_PER_GT * SESPARSE_GRAIN_SECTORS));
    const gdAt = header.grainDirectory.offset * SECTOR;
    const raw = await src.read(gdAt, entries * 8, 'grain directory');
    const tablesAvailable = Math.floor(header.grainTables.size / SESPARSE_TABLE_SECTORS);
    const directory = new Float64Array(entries);
    for (let i = 0; i < entries; i++) {
      const lo = raw.readUInt32LE(i * 8);
      const hi = raw.readUInt32LE(i * 8 + 4);
      if (lo === 0 && hi === 0) {
        directory[i] = -1;
        continue;
      }
      if (hi !== GD_ALLOCATED || lo >= tablesAvailable) {
        throw new DiskFormatError(`entry ${i} (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}) is invalid`, src.name, 'grain directory', gdAt + i * 8);
      }
      directory[i] = (header.grainTables.offset + lo * SESPARSE_TABLE_SECTORS) * SECTOR;
    }
    return new SeSparseExtent(src, length ?? capacityBytes, header, directory);
  }

  protected async loadTable(index: number): Promise<Float64Array | null> {
    const tableOffset = this.directory[index];
    if (tableOffset < 0) return null;
    const structure = `grain table ${index}`;
    const raw = await this.src.read(tableOffset, SESPARSE_GTES_PER_GT * 8, structure);
    const grainsStart = this.header.grains.offset * SECTOR;
    const out = new Float64Array(SESPARSE_GTES_PER_GT);
    for (let i = 0; i < SESPARSE_GTES_PER_GT; i++) {
      const grain = index * SESPARSE_GTES_PER_GT + i;
      const lo = raw.readUInt32LE(i * 8);
      const hi = raw.readUInt32LE(i * 8 + 4);
      const kind = hi >>> 28;
      if (grain * this.grainBytes >= this.length || kind === 0) out[i] = GRAIN_ABSENT;
      else if (kind === 1 || kind === 2) out[i] = GRAIN_ZERO;
      else if (kind === 3) {
        // cluster = bits 48..59 as the low 12 bits, bits 0..47 shifted up by 12.
        const cluster = ((hi >>> 16) & 0xfff) + ((hi & 0xffff) * 2 ** 32 + lo) * 4096;
        const at = grainsStart + cluster * this.grainBytes;
        if (!Number.isSafeInteger(at) || at + this.grainExtent(grain) > this.src.size) {
          throw new DiskFormatError(`entry ${i} points past the end of the file (cluster ${cluster})`, this.src.name, structure, tableOffset + i * 8);
        }
        out[i] = at;
      } else {
        throw new DiskFormatError(`entry ${i} has unknown type ${kind}`, this.src.name, structure, tableOffset + i * 8);
      }
    }
    return out;
  }
}
