import type { Disk } from '@vmkeep/disk';
import { ImageWriteError } from './errors';
import { OUTPUT_FORMATS, OutputFormat, WriteOptions, WriteResult } from './options';
import { writeRaw } from './raw';
import { writeVhdx } from './vhdx';
import { writeVmfsFlat } from './vmdk-flat';
import { writeMonolithicSparse } from './vmdk-sparse';
import { writeStreamOptimized } from './vmdk-stream';

const WRITERS: Record<OutputFormat, (source: Disk, out: string, opts: WriteOptions) => Promise<WriteResult>> = {
  raw: writeRaw,
  'vmdk-stream': writeStreamOptimized,
  'vmdk-sparse': writeMonolithicSparse,
  'vmdk-flat': writeVmfsFlat,
  vhdx: writeVhdx,
};

/**
 * Writes `source` as an image file (or, for vmdk-flat, a descriptor at `out` plus its flat extent) with
 * bounded memory, skipping unallocated and all-zero ranges. The files appear only when complete: on error or
 * abort nothing is left at `out`. The source stays open (the caller closes it).
 */
export async function writeImage(source: Disk, out: string, format: OutputFormat, opts: WriteOptions = {}): Promise<WriteResult> {
  if (!OUTPUT_FORMATS.includes(format)) {
    throw new ImageWriteError(`unknown output format "${String(format)}" (expected ${OUTPUT_FORMATS.join(', ')})`, out);
  }
  opts.signal?.throwIfAborted();
  return WRITERS[format](source, out, opts);
}
