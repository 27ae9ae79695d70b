import type { Disk } from '@vmkeep/disk';
import { streamOptimizedStream, writerParts } from '@vmkeep/disk-formats';
import { checkDiskExportFormat, EXPORT_MEDIA, ExportError, type DiskExportFormat, type ExportStream } from './formats';
import { ovaExport, type OvaVm } from './ova-export';
import { EXPORT_READ_SIZE, readAhead, readsOf } from './read-ahead';
import { vhdxExport } from './vhdx-export';

/** The disk's bytes as they are, in aligned 1 MiB reads with one read ahead. */
async function* rawChunks(disk: Disk): AsyncGenerator<Buffer> {
  for await (const { data } of readAhead(disk, readsOf([{ offset: 0, length: disk.size }], EXPORT_READ_SIZE))) yield data;
}

/**
 * A disk of a restore point as an image, streamed with bounded memory and no temp file: raw and VHDX with their
 * exact length up front, streamOptimized VMDK compressed (length unknown until the end). Read errors surface
 * from `chunks` as they happen; the consumer must then abort its output (never pad it).
 * `fileName` is the name the VMDK descriptor records for its extent.
 */
export async function exportDisk(disk: Disk, format: DiskExportFormat, opts: { fileName?: string } = {}): Promise<ExportStream> {
  checkDiskExportFormat(format);
  const media = EXPORT_MEDIA[format];
  if (format === 'raw') return { format, ...media, length: disk.size, chunks: rawChunks(disk) };
  if (format === 'vhdx') return { format, ...media, ...(await vhdxExport(disk)) };
  if (disk.size <= 0 || disk.size % 512 !== 0) {
    throw new ExportError(`VMDK holds whole 512-byte sectors; a ${disk.size}-byte disk cannot be exported as VMDK`);
  }
  if (disk.size > writerParts.MAX_SPARSE_CAPACITY) throw new ExportError(`a streamOptimized VMDK holds at most 2 TiB; the disk has ${disk.size} bytes`);
  const stream = streamOptimizedStream(disk, { fileName: opts.fileName ?? `disk.${media.extension}` });
  return { format, ...media, chunks: stream };
}

/** The whole VM as an OVA (see ova-export.ts). */
export async function exportVm(vm: OvaVm, disks: Disk[]): Promise<ExportStream> {
  const { length, chunks } = await ovaExport(vm, disks);
  return { format: 'ova', ...EXPORT_MEDIA.ova, length, chunks };
}
