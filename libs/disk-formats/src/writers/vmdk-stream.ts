/**
 * VMDK streamOptimized writer in the true streaming layout (REFERENCE.md 1.4 b): header with GD_AT_END,
 * embedded descriptor, compressed grains in disk order, each grain table (marker + table) right after the last
 * grain it covers, then the grain directory, footer and end-of-stream marker. Every byte is produced strictly
 * in order, so the image can go to a pipe or an HTTP response. Memory: one grain table, the grain directory
 * (4 bytes per 32 MiB) and the grains in flight.
 */
import * as path from 'node:path';
import { Readable } from 'node:stream';
import type { Disk } from '@vmkeep/disk';
import { ImageWriteError } from './errors';
import { defaultConcurrency, deflateOrdered } from './compress';
import type { WriteOptions, WriteResult } from './options';
import { atomically } from './output';
import { scanData } from './scan';
import { checkOptions, checkSectorDisk } from './validate';
import {
  buildDescriptor,
  encodeMarker,
  encodeSparseHeader,
  FLAG_COMPRESSED,
  FLAG_MARKERS,
  FLAG_NEWLINE_DETECT,
  GD_AT_END,
  gdEntries,
  GRAIN_BYTES,
  GRAIN_SECTORS,
  GT_SECTORS,
  GTES_PER_GT,
  MARKER_FOOTER,
  MARKER_GD,
  MARKER_GT,
  MAX_SECTOR_OFFSET,
  MAX_SPARSE_CAPACITY,
  padToSector,
  SECTOR,
  SparseHeader,
  sectorsFor,
} from './vmdk-meta';

export interface StreamOptimizedOptions extends WriteOptions {
  /** Name recorded in the embedded descriptor's extent line (default "disk.vmdk"). */
  fileName?: string;
}

interface Grain {
  /** First sector of the grain in the virtual disk. */
  lba: number;
  data: Buffer;
}

/** Splits the non-zero pieces of the disk into whole grains (the last one zero-padded). */
async function* grainsOf(source: Disk, opts: StreamOptimizedOptions): AsyncGenerator<Grain> {
  for await (const piece of scanData(source, { unit: GRAIN_BYTES, signal: opts.signal, onProgress: opts.onProgress })) {
    for (let pos = 0; pos < piece.data.length; pos += GRAIN_BYTES) {
      let data = piece.data.subarray(pos, pos + GRAIN_BYTES);
      if (data.length < GRAIN_BYTES) data = Buffer.concat([data, Buffer.alloc(GRAIN_BYTES - data.length)]);
      yield { lba: (piece.offset + pos) / SECTOR, data };
    }
  }
}

/** A compressed grain: u64 lba, u32 compressed size, zlib data, zero padding to a sector. */
function grainRecord(lba: number, compressed: Buffer): Buffer {
  const record = Buffer.alloc(sectorsFor(12 + compressed.length) * SECTOR);
  record.writeBigUInt64LE(BigInt(lba), 0);
  record.writeUInt32LE(compressed.length, 8);
  compressed.copy(record, 12);
  return record;
}

/**
 * The bytes of a streamOptimized image of `source`, in order. Throws ImageWriteError before the first byte when
 * the disk cannot be a sparse extent, and the source's errors as they come.
 */
export async function* streamOptimizedChunks(source: Disk, opts: StreamOptimizedOptions = {}, target = opts.fileName ?? 'disk.vmdk'): AsyncGenerator<Buffer> {
  const o = checkOptions(opts, target);
  checkSectorDisk(source, MAX_SPARSE_CAPACITY, 'VMDK streamOptimized', target);
  const capacitySectors = source.size / SECTOR;
  const descriptor = Buffer.from(
    buildDescriptor(
      { createType: 'streamOptimized', capacitySectors, extentType: 'SPARSE', extentFile: opts.fileName ?? 'disk.vmdk', adapterType: o.adapterType, virtualHWVersion: o.virtualHWVersion },
      target,
    ),
  );
  const header: SparseHeader = {
    version: 3,
    flags: FLAG_NEWLINE_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
    capacitySectors,
    grainSectors: GRAIN_SECTORS,
    descriptorOffset: 1,
    descriptorSectors: sectorsFor(descriptor.length),
    rgdOffset: 0,
    gdOffset: GD_AT_END,
    overHead: 1 + sectorsFor(descriptor.length),
    compressAlgorithm: 1,
  };
  const gd = Buffer.alloc(gdEntries(capacitySectors) * 4);
  let gt = Buffer.alloc(GT_SECTORS * SECTOR);
  let gtIndex = -1;
  let sector = 0;
  const emit = (b: Buffer): Buffer => {
    sector += b.length / SECTOR;
    return b;
  };
  function* flushTable(): Generator<Buffer> {
    if (gtIndex < 0) return;
    yield emit(encodeMarker(GT_SECTORS, MARKER_GT));
    if (sector > MAX_SECTOR_OFFSET) throw new ImageWriteError('image grows past the 2 TiB a sparse extent can address', target);
    gd.writeUInt32LE(sector, gtIndex * 4);
    yield emit(gt);
    gt = Buffer.alloc(GT_SECTORS * SECTOR);
    gtIndex = -1;
  }

  yield emit(encodeSparseHeader(header));
  yield emit(padToSector(descriptor));
  const grains = deflateOrdered(grainsOf(source, opts), (g) => g.data, o.compressionLevel, o.concurrency ?? defaultConcurrency());
  for await (const { item, compressed } of grains) {
    const grainNo = item.lba / GRAIN_SECTORS;
    const table = Math.floor(grainNo / GTES_PER_GT);
    if (table !== gtIndex) {
      yield* flushTable();
      gtIndex = table;
    }
    if (sector > MAX_SECTOR_OFFSET) throw new ImageWriteError('image grows past the 2 TiB a sparse extent can address', target);
    gt.writeUInt32LE(sector, (grainNo % GTES_PER_GT) * 4);
    yield emit(grainRecord(item.lba, compressed));
  }
  yield* flushTable();
  yield emit(encodeMarker(sectorsFor(gd.length), MARKER_GD));
  const gdSector = sector;
  yield emit(padToSector(gd));
  yield emit(encodeMarker(1, MARKER_FOOTER));
  yield emit(encodeSparseHeader({ ...header, gdOffset: gdSector }));
  yield emit(Buffer.alloc(SECTOR)); // end-of-stream marker
}

/** A readable byte stream of the streamOptimized image (for HTTP export). Destroying it stops the work. */
export function streamOptimizedStream(source: Disk, opts: StreamOptimizedOptions = {}): Readable {
  return Readable.from(streamOptimizedChunks(source, opts), { objectMode: false, highWaterMark: 1024 * 1024 });
}

/** Writes a streamOptimized VMDK to `out` atomically. */
export async function writeStreamOptimized(source: Disk, out: string, opts: WriteOptions = {}): Promise<WriteResult> {
  const fileName = path.basename(out);
  return atomically(async (files) => {
    const chunks = streamOptimizedChunks(source, { ...opts, fileName }, out);
    // Validate before creating anything: the first chunk (the header) is produced after every check.
    const first = await chunks.next();
    const file = await files.open(out);
    if (!first.done) await file.append(first.value);
    for await (const chunk of chunks) await file.append(chunk);
    await file.finish();
    return { files: [out], bytesWritten: file.bytesWritten };
  });
}
