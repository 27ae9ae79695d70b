/**
 * VHDX produced strictly in order, for HTTP: the block allocation table comes before the payload in a VHDX,
 * so the blocks to allocate are decided up front from the disk's extents (for a restore point: its non-zero
 * chunks), not from the data. Every block that may hold data is stored whole (zeros included); blocks
 * outside the extents are NOT_PRESENT and read as zeros. The exact length is known before the first byte.
 */
import type { Disk } from '@vmkeep/disk';
import { writerParts } from '@vmkeep/disk-formats';
import { ExportError } from './formats';
import { readAhead, readsOf } from './read-ahead';

const MiB = 1024 * 1024;
const MAX_VHDX_DISK = 64 * 2 ** 40;
/** At most this many payload blocks, so that the block list and BAT stay small in memory (16 MiB). */
const MAX_BLOCKS = 2 ** 21;

/**
 * Payload block size: 1 MiB (the smallest VHDX allows, and the repository's chunk size, so no zero chunk is
 * stored) unless the disk is so large that the block count would pass MAX_BLOCKS.
 */
export function vhdxExportBlockSize(size: number): number {
  let block = MiB;
  while (Math.ceil(size / block) > MAX_BLOCKS) block *= 2;
  return block;
}

export interface VhdxExport {
  length: number;
  chunks: AsyncIterable<Buffer>;
}

export async function vhdxExport(disk: Disk): Promise<VhdxExport> {
  const size = disk.size;
  if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
    throw new ExportError(`VHDX holds whole 512-byte sectors; a ${size}-byte disk cannot be exported as VHDX`);
  }
  if (size > MAX_VHDX_DISK) throw new ExportError(`VHDX holds at most 64 TiB; the disk has ${size} bytes`);
  const blockSize = vhdxExportBlockSize(size);
  const layout = writerParts.vhdxLayout(size, blockSize);
  const present: number[] = [];
  for (const run of writerParts.alignedRuns(await disk.extents(), size, blockSize)) {
    for (let at = run.offset; at < run.offset + run.length; at += blockSize) present.push(at / blockSize);
  }
  const prologue = writerParts.vhdxPrologue(size, layout, present);
  const blocks = present.map((b) => ({ offset: b * blockSize, length: Math.min(blockSize, size - b * blockSize) }));

  async function* chunks(): AsyncGenerator<Buffer> {
    yield prologue;
    for await (const { offset, data } of readAhead(disk, readsOf(blocks))) {
      yield data;
      // The disk's last block may be shorter than a block: the file stores it whole.
      const blockEnd = (Math.floor(offset / blockSize) + 1) * blockSize;
      if (offset + data.length === size && blockEnd > size) yield Buffer.alloc(blockEnd - size);
    }
  }
  return { length: layout.dataOffset + present.length * blockSize, chunks: chunks() };
}
