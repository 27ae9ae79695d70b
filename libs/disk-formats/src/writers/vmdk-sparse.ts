/**
 * VMDK monolithicSparse writer in qemu's/Workstation's layout (REFERENCE.md 1.3): header, embedded descriptor
 * (20 sectors), redundant grain directory and its preallocated tables, primary directory and tables, then
 * uncompressed grains from overHead on. Tables start as holes (zeros); grains are appended in disk order and
 * each grain table is written to both copies once its 32 MiB range is done, so memory holds one table.
 */
import * as path from 'node:path';
import type { Disk } from '@vmkeep/disk';
import { ImageWriteError } from './errors';
import type { WriteOptions, WriteResult } from './options';
import { atomically, OutputFile } from './output';
import { scanData } from './scan';
import { checkOptions, checkSectorDisk } from './validate';
import {
  buildDescriptor,
  encodeSparseHeader,
  FLAG_NEWLINE_DETECT,
  FLAG_REDUNDANT_GD,
  gdEntries,
  GRAIN_BYTES,
  GRAIN_SECTORS,
  GT_SECTORS,
  GTES_PER_GT,
  MAX_SECTOR_OFFSET,
  MAX_SPARSE_CAPACITY,
  padToSector,
  SECTOR,
  sectorsFor,
} from './vmdk-meta';

const DESCRIPTOR_SECTORS = 20;

export interface SparseLayout {
  tables: number;
  gdSectors: number;
  rgdOffset: number;
  rgtOffset: number;
  gdOffset: number;
  gtOffset: number;
  /** First grain sector (grain aligned). */
  overHead: number;
}

export function sparseLayout(capacitySectors: number): SparseLayout {
  const tables = gdEntries(capacitySectors);
  const gdSectors = sectorsFor(tables * 4);
  const rgdOffset = 1 + DESCRIPTOR_SECTORS;
  const rgtOffset = rgdOffset + gdSectors;
  const gdOffset = rgtOffset + tables * GT_SECTORS;
  const gtOffset = gdOffset + gdSectors;
  const overHead = Math.ceil((gtOffset + tables * GT_SECTORS) / GRAIN_SECTORS) * GRAIN_SECTORS;
  return { tables, gdSectors, rgdOffset, rgtOffset, gdOffset, gtOffset, overHead };
}

function directory(tables: number, firstTable: number): Buffer {
  const gd = Buffer.alloc(tables * 4);
  for (let i = 0; i < tables; i++) gd.writeUInt32LE(firstTable + i * GT_SECTORS, i * 4);
  return padToSector(gd);
}

export async function writeMonolithicSparse(source: Disk, out: string, opts: WriteOptions = {}): Promise<WriteResult> {
  const o = checkOptions(opts, out);
  checkSectorDisk(source, MAX_SPARSE_CAPACITY, 'VMDK monolithicSparse', out);
  const capacitySectors = source.size / SECTOR;
  const layout = sparseLayout(capacitySectors);
  const descriptor = buildDescriptor(
    { createType: 'monolithicSparse', capacitySectors, extentType: 'SPARSE', extentFile: path.basename(out), adapterType: o.adapterType, virtualHWVersion: o.virtualHWVersion },
    out,
  );
  const descBytes = Buffer.alloc(DESCRIPTOR_SECTORS * SECTOR);
  if (Buffer.byteLength(descriptor) > descBytes.length) throw new ImageWriteError('descriptor does not fit in its 20 sectors', out);
  descBytes.write(descriptor);
  const header = encodeSparseHeader({
    version: 1,
    flags: FLAG_NEWLINE_DETECT | FLAG_REDUNDANT_GD,
    capacitySectors,
    grainSectors: GRAIN_SECTORS,
    descriptorOffset: 1,
    descriptorSectors: DESCRIPTOR_SECTORS,
    rgdOffset: layout.rgdOffset,
    gdOffset: layout.gdOffset,
    overHead: layout.overHead,
    compressAlgorithm: 0,
  });

  return atomically(async (files) => {
    const file = await files.open(out);
    await file.truncate(layout.overHead * SECTOR);
    await file.writeAt(Buffer.concat([header, descBytes]), 0);
    await file.writeAt(directory(layout.tables, layout.rgtOffset), layout.rgdOffset * SECTOR);
    await file.writeAt(directory(layout.tables, layout.gtOffset), layout.gdOffset * SECTOR);
    await writeGrains(source, file, layout, opts);
    await file.finish();
    return { files: [out], bytesWritten: file.bytesWritten };
  });
}

async function writeGrains(source: Disk, file: OutputFile, layout: SparseLayout, opts: WriteOptions): Promise<void> {
  let next = layout.overHead;
  let table = -1;
  const gt = Buffer.alloc(GT_SECTORS * SECTOR);
  const flushTable = async () => {
    if (table < 0) return;
    await file.writeAt(gt, (layout.rgtOffset + table * GT_SECTORS) * SECTOR);
    await file.writeAt(gt, (layout.gtOffset + table * GT_SECTORS) * SECTOR);
    gt.fill(0);
  };
  for await (const piece of scanData(source, { unit: GRAIN_BYTES, signal: opts.signal, onProgress: opts.onProgress })) {
    const grains = Math.ceil(piece.data.length / GRAIN_BYTES);
    if (next + grains * GRAIN_SECTORS - 1 > MAX_SECTOR_OFFSET) throw new ImageWriteError('image grows past the 2 TiB a sparse extent can address', file.target);
    const data = piece.data.length === grains * GRAIN_BYTES ? piece.data : Buffer.concat([piece.data, Buffer.alloc(grains * GRAIN_BYTES - piece.data.length)]);
    await file.writeAt(data, next * SECTOR);
    for (let i = 0; i < grains; i++) {
      const grainNo = piece.offset / GRAIN_BYTES + i;
      const t = Math.floor(grainNo / GTES_PER_GT);
      if (t !== table) {
        await flushTable();
        table = t;
      }
      gt.writeUInt32LE(next, (grainNo % GTES_PER_GT) * 4);
      next += GRAIN_SECTORS;
    }
  }
  await flushTable();
}
