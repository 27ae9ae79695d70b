import type { Disk } from '@vmkeep/disk';
import { streamOptimizedStream, writerParts } from '@vmkeep/disk-formats';
import { checkDiskExportFormat, EXPORT_MEDIA, ExportError, type DiskExportFormat, type ExportStream } from './formats';
import { ovaExport, type OvaVm } from './ova-export';
import { EXPORT_READ_SIZE, readAhead, readsOf } from './read-ahead';
import { vhdxExport } from './vhdx-export';

/** A disk that takes back buffers its reads returned (a restore point: PointDisk.release). */
interface Releasing {
  release(buffer: Buffer): void;
}

/**
 * The disk's bytes as they are: its data ranges (extents, widened to whole reads) in aligned reads of its chunk size (a restore point's
 * chunk comes out as the decoded buffer itself) or 1 MiB, several in flight; the holes between them as views of
 * one shared zero buffer, never read nor allocated per piece. Consumers must not write into the buffers; those a
 * read returned may be handed back through `release` (to the disk's own release, when it has one).
 */
function rawExport(disk: Disk): Pick<ExportStream, 'chunks' | 'release'> {
  const fromReads = new WeakSet<Buffer>();
  const chunks = async function* (): AsyncGenerator<Buffer> {
    const chunkSize = (disk as { chunkSize?: unknown }).chunkSize;
    const readSize = typeof chunkSize === 'number' && Number.isSafeInteger(chunkSize) && chunkSize > 0 ? chunkSize : EXPORT_READ_SIZE;
    // Sorted, merged and aligned to readSize, whatever the source's extents look like.
    const data = writerParts.alignedRuns(await disk.extents(), disk.size, readSize);
    let zeros: Buffer | undefined;
    let pos = 0;
    const holeUntil = function* (end: number): Generator<Buffer> {
      zeros ??= Buffer.alloc(readSize);
      for (; pos < end; pos += Math.min(readSize, end - pos)) yield zeros.subarray(0, Math.min(readSize, end - pos));
    };
    for await (const piece of readAhead(disk, readsOf(data, readSize))) {
      yield* holeUntil(piece.offset);
      fromReads.add(piece.data);
      yield piece.data;
      pos = piece.offset + piece.data.length;
    }
    yield* holeUntil(disk.size);
  };
  const release = (disk as Partial<Releasing>).release;
  if (typeof release !== 'function') return { chunks: chunks() };
  // Only buffers a read returned go back, each once; the shared zero views never do.
  return { chunks: chunks(), release: (chunk) => fromReads.delete(chunk) && release.call(disk, chunk) };
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
  if (format === 'raw') return { format, ...media, length: disk.size, ...rawExport(disk) };
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
