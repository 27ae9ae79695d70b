/**
 * streamOptimized VMDK whose exact length is known before the first byte, for OVA streaming (a tar member
 * header carries the member's size, and the OVF that comes first names it too). Grains are deflate "stored"
 * blocks (zlib level 0), whose size does not depend on the data, and the grains to store are decided from the
 * disk's extents (for a restore point: its non-zero chunks). The tradeoff: no compression, in exchange for no
 * temp copy and a response that starts at once. Layout as in REFERENCE.md 1.4 b (grain tables after their
 * grains, grain directory and footer at the end).
 */
import { deflateSync } from 'node:zlib';
import type { Disk, Extent } from '@vmkeep/disk';
import { writerParts as P, type VmdkAdapterType } from '@vmkeep/disk-formats';
import { ExportError } from './formats';
import { EXPORT_READ_SIZE, readAhead, readsOf } from './read-ahead';

/** Length of the zlib stream of one grain at level 0: content-independent, measured once. */
const STORED_GRAIN = deflateSync(Buffer.alloc(P.GRAIN_BYTES), { level: 0 }).length;
/** A grain record: u64 lba, u32 size, the zlib data, padded to a sector. */
const RECORD_BYTES = P.sectorsFor(12 + STORED_GRAIN) * P.SECTOR;

export interface SizedVmdkOptions {
  /** Name recorded in the embedded descriptor's extent line. */
  fileName: string;
  adapterType?: VmdkAdapterType;
}

export interface SizedVmdk {
  length: number;
  chunks: AsyncIterable<Buffer>;
}

/** Grain numbers runs (first, count) covering the extents. */
function grainRuns(extents: readonly Extent[], size: number): { first: number; count: number }[] {
  return P.alignedRuns(extents, size, P.GRAIN_BYTES).map((r) => ({ first: r.offset / P.GRAIN_BYTES, count: Math.ceil(r.length / P.GRAIN_BYTES) }));
}

/** Number of grain tables the grains of `runs` fall into. */
function tableCount(runs: readonly { first: number; count: number }[]): number {
  let tables = 0;
  let last = -1;
  for (const { first, count } of runs) {
    const a = Math.floor(first / P.GTES_PER_GT);
    const b = Math.floor((first + count - 1) / P.GTES_PER_GT);
    tables += b - a + 1 - (a === last ? 1 : 0);
    last = b;
  }
  return tables;
}

export async function sizedStreamOptimized(disk: Disk, opts: SizedVmdkOptions): Promise<SizedVmdk> {
  const size = disk.size;
  try {
    P.checkSectorDisk(disk, P.MAX_SPARSE_CAPACITY, 'VMDK streamOptimized', opts.fileName);
    P.checkOptions({ adapterType: opts.adapterType }, opts.fileName);
  } catch (err) {
    throw new ExportError((err as Error).message);
  }
  const capacitySectors = size / P.SECTOR;
  const descriptor = P.padToSector(
    Buffer.from(
      P.buildDescriptor(
        { createType: 'streamOptimized', capacitySectors, extentType: 'SPARSE', extentFile: opts.fileName, adapterType: opts.adapterType ?? 'lsilogic', virtualHWVersion: 4 },
        opts.fileName,
      ),
    ),
  );
  const runs = grainRuns(await disk.extents(), size);
  const grains = runs.reduce((n, r) => n + r.count, 0);
  const gdBytes = P.padToSector(Buffer.alloc(P.gdEntries(capacitySectors) * 4)).length;
  const sectors =
    1 + descriptor.length / P.SECTOR + (grains * RECORD_BYTES) / P.SECTOR + tableCount(runs) * (1 + P.GT_SECTORS) + 1 + gdBytes / P.SECTOR + 3;
  if (sectors > P.MAX_SECTOR_OFFSET) throw new ExportError(`an uncompressed streamOptimized image of this disk passes the 2 TiB a sparse extent can address`);
  const header: P.SparseHeader = {
    version: 3,
    flags: P.FLAG_NEWLINE_DETECT | P.FLAG_COMPRESSED | P.FLAG_MARKERS,
    capacitySectors,
    grainSectors: P.GRAIN_SECTORS,
    descriptorOffset: 1,
    descriptorSectors: descriptor.length / P.SECTOR,
    rgdOffset: 0,
    gdOffset: P.GD_AT_END,
    overHead: 1 + descriptor.length / P.SECTOR,
    compressAlgorithm: 1,
  };

  async function* chunks(): AsyncGenerator<Buffer> {
    const gd = Buffer.alloc(gdBytes);
    let gt = Buffer.alloc(P.GT_SECTORS * P.SECTOR);
    let gtIndex = -1;
    let sector = 1 + descriptor.length / P.SECTOR;
    const tableOut = (): Buffer[] => {
      if (gtIndex < 0) return [];
      const out = [P.encodeMarker(P.GT_SECTORS, P.MARKER_GT), gt];
      gd.writeUInt32LE(sector + 1, gtIndex * 4);
      sector += 1 + P.GT_SECTORS;
      gt = Buffer.alloc(P.GT_SECTORS * P.SECTOR);
      gtIndex = -1;
      return out;
    };
    yield P.encodeSparseHeader(header);
    yield descriptor;
    const reads = readsOf(
      runs.map((r) => ({ offset: r.first * P.GRAIN_BYTES, length: r.count * P.GRAIN_BYTES })),
      EXPORT_READ_SIZE - (EXPORT_READ_SIZE % P.GRAIN_BYTES),
    );
    // Reads may reach past the disk's end (its last grain is partial): clip them, pad the grain.
    const clipped = (function* () {
      for (const r of reads) if (r.offset < size) yield { offset: r.offset, length: Math.min(r.length, size - r.offset) };
    })();
    for await (const { offset, data } of readAhead(disk, clipped)) {
      const out: Buffer[] = [];
      for (let pos = 0; pos < data.length; pos += P.GRAIN_BYTES) {
        let grain = data.subarray(pos, pos + P.GRAIN_BYTES);
        if (grain.length < P.GRAIN_BYTES) grain = Buffer.concat([grain, Buffer.alloc(P.GRAIN_BYTES - grain.length)]);
        const grainNo = (offset + pos) / P.GRAIN_BYTES;
        const table = Math.floor(grainNo / P.GTES_PER_GT);
        if (table !== gtIndex) {
          out.push(...tableOut());
          gtIndex = table;
        }
        gt.writeUInt32LE(sector, (grainNo % P.GTES_PER_GT) * 4);
        out.push(grainRecord(grainNo * P.GRAIN_SECTORS, grain));
        sector += RECORD_BYTES / P.SECTOR;
      }
      yield Buffer.concat(out);
    }
    yield* tableOut();
    yield P.encodeMarker(gdBytes / P.SECTOR, P.MARKER_GD);
    const gdSector = sector + 1;
    yield gd;
    yield P.encodeMarker(1, P.MARKER_FOOTER);
    yield P.encodeSparseHeader({ ...header, gdOffset: gdSector });
    yield Buffer.alloc(P.SECTOR); // end-of-stream marker
  }
  return { length: sectors * P.SECTOR, chunks: chunks() };
}

function grainRecord(lba: number, grain: Buffer): Buffer {
  const stored = deflateSync(grain, { level: 0 });
  if (stored.length !== STORED_GRAIN) throw new Error(`zlib level 0 produced ${stored.length} bytes for a grain, expected ${STORED_GRAIN}`);
  const record = Buffer.alloc(RECORD_BYTES);
  record.writeBigUInt64LE(BigInt(lba), 0);
  record.writeUInt32LE(STORED_GRAIN, 8);
  stored.copy(record, 12);
  return record;
}
