/**
 * Raw images as sparse files: the file gets the disk's exact size up front (a hole), then only the non-zero
 * runs are written, so zero and unallocated ranges stay holes.
 */
import type { Disk } from '@vmkeep/disk';
import { ImageWriteError } from './errors';
import type { WriteOptions, WriteResult } from './options';
import { atomically, OutputFile } from './output';
import { scanData } from './scan';

/** Zero detection granularity of raw output: small enough for useful holes, large enough to be cheap. */
const RAW_UNIT = 64 * 1024;

/** Copies the data of `source` into `file` (fresh, empty) as a sparse file of exactly source.size bytes. */
export async function copySparse(source: Disk, file: OutputFile, opts: WriteOptions): Promise<void> {
  await file.truncate(source.size);
  for await (const piece of scanData(source, { unit: RAW_UNIT, signal: opts.signal, onProgress: opts.onProgress })) {
    await file.writeAt(piece.data, piece.offset);
  }
}

export async function writeRaw(source: Disk, out: string, opts: WriteOptions = {}): Promise<WriteResult> {
  if (!Number.isSafeInteger(source.size) || source.size < 0) throw new ImageWriteError(`invalid disk size ${source.size}`, out);
  return atomically(async (files) => {
    const file = await files.open(out);
    await copySparse(source, file, opts);
    await file.finish();
    return { files: [out], bytesWritten: file.bytesWritten };
  });
}
