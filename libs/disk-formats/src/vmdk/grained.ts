import type { Extent } from '@vmkeep/disk';
import { DiskFormatError } from '../errors';
import type { ByteSource } from '../source';
import { PieceList, checkExtentRead, type ExtentMap, type Piece, type VmdkExtent } from './layer';
import { TABLE_CACHE_ENTRIES } from './limits';
import { Lru } from './lru';
import { pushRange } from './ranges';

/** Decoded grain table entry values besides a file byte offset (which is always ≥ 0). */
export const GRAIN_ABSENT = -1;
export const GRAIN_ZERO = -2;

/** Longest run of file-contiguous grains read in one go. */
const MAX_RUN = 8 * 1024 * 1024;

type Step =
  | { kind: 'absent' | 'zero'; length: number }
  | { kind: 'raw'; fileOffset: number; length: number }
  | { kind: 'compressed'; grain: number; fileOffset: number; within: number; length: number };

/**
 * Base of every directory → table → grain format (hosted sparse, streamOptimized, COWD, seSparse). Subclasses
 * decode one grain table into file byte offsets (or GRAIN_ABSENT / GRAIN_ZERO), validating each entry; this
 * class caches a bounded number of tables, plans reads (coalescing file-contiguous grains) and builds the
 * allocation map.
 */
export abstract class GrainedExtent implements VmdkExtent {
  private readonly tables = new Lru<number, Float64Array | null>(TABLE_CACHE_ENTRIES);
  private readonly inflated = new Lru<number, Buffer>(4);

  protected constructor(
    protected readonly src: ByteSource,
    /** Virtual bytes this extent covers. */
    readonly length: number,
    protected readonly grainBytes: number,
    protected readonly grainsPerTable: number,
    /** Number of grain directory entries. */
    protected readonly tableCount: number,
    protected readonly compressed: boolean,
  ) {}

  abstract readonly files: string[];

  /** Entries of grain table `index`, or null when the directory marks the whole table unallocated. */
  protected abstract loadTable(index: number): Promise<Float64Array | null>;

  /** Decompressed bytes of grain `grain` stored at `fileOffset` (compressed formats only). */
  protected inflateGrain(grain: number, _fileOffset: number): Promise<Buffer> {
    throw new DiskFormatError('grain is not compressed', this.src.name, `grain ${grain}`);
  }

  /** Bytes of grain `grain` that lie inside the extent (the last grain may be short). */
  protected grainExtent(grain: number): number {
    return Math.min(this.grainBytes, this.length - grain * this.grainBytes);
  }

  private table(index: number): Promise<Float64Array | null> {
    return this.tables.load(index, () => this.loadTable(index));
  }

  private async entry(grain: number): Promise<number> {
    const t = Math.floor(grain / this.grainsPerTable);
    if (t >= this.tableCount) return GRAIN_ABSENT;
    const table = await this.table(t);
    return table ? table[grain % this.grainsPerTable] : GRAIN_ABSENT;
  }

  private async plan(offset: number, length: number): Promise<Step[]> {
    const steps: Step[] = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const grain = Math.floor(pos / this.grainBytes);
      const within = pos - grain * this.grainBytes;
      const n = Math.min(this.grainBytes - within, end - pos);
      const value = await this.entry(grain);
      const last = steps[steps.length - 1];
      if (value === GRAIN_ABSENT || value === GRAIN_ZERO) {
        const kind = value === GRAIN_ABSENT ? 'absent' : 'zero';
        if (last && last.kind === kind) last.length += n;
        else steps.push({ kind, length: n });
      } else if (this.compressed) {
        steps.push({ kind: 'compressed', grain, fileOffset: value, within, length: n });
      } else {
        const fileOffset = value + within;
        if (last && last.kind === 'raw' && last.fileOffset + last.length === fileOffset && last.length + n <= MAX_RUN) {
          last.length += n;
        } else steps.push({ kind: 'raw', fileOffset, length: n });
      }
      pos += n;
    }
    return steps;
  }

  private async grainBytesOf(grain: number, fileOffset: number): Promise<Buffer> {
    return this.inflated.load(grain, () => this.inflateGrain(grain, fileOffset));
  }

  async read(offset: number, length: number): Promise<Piece[]> {
    checkExtentRead(this, this.src.name, offset, length);
    const steps = await this.plan(offset, length);
    const buffers = await Promise.all(
      steps.map(async (s) => {
        if (s.kind === 'raw') return this.src.read(s.fileOffset, s.length, 'grain data');
        if (s.kind === 'compressed') {
          const grain = await this.grainBytesOf(s.grain, s.fileOffset);
          return grain.subarray(s.within, s.within + s.length);
        }
        return undefined;
      }),
    );
    const out = new PieceList();
    steps.forEach((s, i) => {
      const buf = buffers[i];
      if (buf) out.data(buf);
      else out.empty(s.kind === 'zero' ? 'zero' : 'absent', s.length);
    });
    return out.pieces;
  }

  async map(): Promise<ExtentMap> {
    const data: Extent[] = [];
    const zero: Extent[] = [];
    for (let t = 0; t < this.tableCount; t++) {
      const first = t * this.grainsPerTable;
      if (first * this.grainBytes >= this.length) break;
      const table = await this.table(t);
      if (!table) continue;
      for (let i = 0; i < this.grainsPerTable; i++) {
        const grain = first + i;
        const start = grain * this.grainBytes;
        if (start >= this.length) break;
        const value = table[i];
        if (value === GRAIN_ABSENT) continue;
        pushRange(value === GRAIN_ZERO ? zero : data, start, this.grainExtent(grain));
      }
    }
    return { data, zero };
  }

  async close(): Promise<void> {
    await this.src.close();
  }
}

/** Reads `count` u32 LE values at `offset`. */
export async function readU32Table(src: ByteSource, offset: number, count: number, structure: string): Promise<Uint32Array> {
  const buf = await src.read(offset, count * 4, structure);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = buf.readUInt32LE(i * 4);
  return out;
}
