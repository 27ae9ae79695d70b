import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { isPowerOfTwo, readU64 } from './bytes';
import { MAX_DESCRIPTOR_BYTES, MAX_VIRTUAL_BYTES, SECTOR } from './limits';

export const KDMV_MAGIC = 0x564d444b;
export const GD_AT_END = Number.MAX_SAFE_INTEGER; // stands for 0xFFFFFFFFFFFFFFFF after u64 decoding
export const FLAG_NEWLINE_DETECT = 0x1;
export const FLAG_REDUNDANT_GD = 0x2;
export const FLAG_ZERO_GRAIN = 0x4;
export const FLAG_COMPRESSED = 0x10000;
export const FLAG_MARKERS = 0x20000;
const KNOWN_FLAGS = FLAG_NEWLINE_DETECT | FLAG_REDUNDANT_GD | FLAG_ZERO_GRAIN | FLAG_COMPRESSED | FLAG_MARKERS;
/** Largest grain accepted (sectors): 16 MiB. VMware uses 128. */
export const MAX_GRAIN_SECTORS = 32768;
export const GTES_PER_GT = 512;

/** The 512-byte header of a hosted sparse extent (also the footer of a streamOptimized file). */
export interface SparseHeader {
  version: number;
  flags: number;
  /** Sectors. */
  capacity: number;
  grainSectors: number;
  descriptorOffset: number;
  descriptorSectors: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  /** Sector of the grain directory, or GD_AT_END. */
  gdOffset: number;
  overHead: number;
  uncleanShutdown: boolean;
  compressAlgorithm: number;
}

/** Reads a u64 LE; all-ones becomes GD_AT_END, other values above 2^53 are refused. */
function u64(buf: Buffer, at: number, field: string, file: string, structure: string, base: number): number {
  const value = readU64(buf, at);
  if (value === Infinity) return GD_AT_END;
  if (Number.isNaN(value)) throw new DiskFormatError(`${field} is absurd`, file, structure, base + at);
  return value;
}

/**
 * Decodes and validates a KDMV header against the size of its file. `base` is the header's offset in the file
 * (0, or the footer position) for error messages. Throws a DiskFormatError naming the field.
 */
export function parseSparseHeader(buf: Buffer, file: string, fileSize: number, base = 0, structure = 'sparse header'): SparseHeader {
  if (buf.length < SECTOR) throw new DiskFormatError('file is truncated', file, structure, base);
  if (buf.readUInt32LE(0) !== KDMV_MAGIC) throw new DiskFormatError('bad magic (expected KDMV)', file, structure, base);
  const version = buf.readUInt32LE(4);
  if (version < 1 || version > 3) throw new UnsupportedFormatError(`version ${version}`, file, structure, base + 4);
  const flags = buf.readUInt32LE(8);
  const unknownIncompatible = flags & 0xffff0000 & ~KNOWN_FLAGS;
  if (unknownIncompatible) {
    throw new UnsupportedFormatError(`incompatible flags 0x${(unknownIncompatible >>> 0).toString(16)}`, file, structure, base + 8);
  }
  const h: SparseHeader = {
    version,
    flags,
    capacity: u64(buf, 12, 'capacity', file, structure, base),
    grainSectors: u64(buf, 20, 'grainSize', file, structure, base),
    descriptorOffset: u64(buf, 28, 'descriptorOffset', file, structure, base),
    descriptorSectors: u64(buf, 36, 'descriptorSize', file, structure, base),
    numGTEsPerGT: buf.readUInt32LE(44),
    rgdOffset: u64(buf, 48, 'rgdOffset', file, structure, base),
    gdOffset: u64(buf, 56, 'gdOffset', file, structure, base),
    overHead: u64(buf, 64, 'overHead', file, structure, base),
    uncleanShutdown: buf[72] !== 0,
    compressAlgorithm: buf.readUInt16LE(77),
  };
  const at = (field: number): number => base + field;

  if ((flags & FLAG_NEWLINE_DETECT) && !(buf[73] === 0x0a && buf[74] === 0x20 && buf[75] === 0x0d && buf[76] === 0x0a)) {
    throw new DiskFormatError('newline detector bytes altered: the file was damaged by a text-mode transfer', file, structure, at(73));
  }
  if (h.grainSectors === 0) {
    throw new DiskFormatError('grainSize is 0', file, structure, at(20));
  }
  if (h.grainSectors > MAX_GRAIN_SECTORS) {
    throw new DiskFormatError(`grainSize ${h.grainSectors} sectors is too large`, file, structure, at(20));
  }
  if (!isPowerOfTwo(h.grainSectors)) {
    throw new DiskFormatError(`grainSize ${h.grainSectors} is not a power of two`, file, structure, at(20));
  }
  if (h.capacity === GD_AT_END || h.capacity * SECTOR > MAX_VIRTUAL_BYTES) {
    throw new DiskFormatError(`capacity of ${h.capacity} sectors is absurd`, file, structure, at(12));
  }
  if (h.numGTEsPerGT !== GTES_PER_GT) {
    throw new DiskFormatError(`numGTEsPerGT is ${h.numGTEsPerGT}, expected ${GTES_PER_GT}`, file, structure, at(44));
  }
  const compressed = (flags & FLAG_COMPRESSED) !== 0;
  if (compressed && h.compressAlgorithm !== 1) {
    throw new UnsupportedFormatError(`compression algorithm ${h.compressAlgorithm}`, file, structure, at(77));
  }
  if (compressed && !(flags & FLAG_MARKERS)) {
    throw new UnsupportedFormatError('compressed grains without markers', file, structure, at(8));
  }
  const fileSectors = Math.floor(fileSize / SECTOR);
  if (h.descriptorOffset !== 0) {
    if (h.descriptorOffset === GD_AT_END || h.descriptorOffset < 1 || h.descriptorSectors === GD_AT_END ||
        h.descriptorOffset + h.descriptorSectors > fileSectors) {
      throw new DiskFormatError('embedded descriptor lies past the end of the file', file, structure, at(28));
    }
    if (h.descriptorSectors * SECTOR > MAX_DESCRIPTOR_BYTES) {
      throw new DiskFormatError(`embedded descriptor of ${h.descriptorSectors} sectors is too large`, file, structure, at(36));
    }
  }
  return h;
}

export function grainBytes(h: SparseHeader): number {
  return h.grainSectors * SECTOR;
}

/** Number of grain directory entries the capacity needs. */
export function directoryEntries(h: SparseHeader): number {
  return Math.ceil(h.capacity / (h.numGTEsPerGT * h.grainSectors));
}
