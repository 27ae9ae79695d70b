/** Reads a range of a guest file in pieces; holes (outside the file's extents) are produced as zeros, never read. */
import type { Extent } from '@vmkeep/disk';
import type { FileHandle } from '@vmkeep/filesystems';

/** Bytes per read and per zero buffer. */
export const PIECE = 1024 * 1024;
const ZEROS = Buffer.alloc(PIECE);

/** Data extents of [start, end) clipped to the range, in order. */
function clip(extents: Extent[], start: number, end: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const from = Math.max(e.offset, start);
    const to = Math.min(e.offset + e.length, end);
    if (to > from) out.push({ offset: from, length: to - from });
  }
  return out;
}

function* zeros(length: number): Generator<Buffer> {
  for (let left = length; left > 0; left -= PIECE) yield left >= PIECE ? ZEROS : ZEROS.subarray(0, left);
}

/** The bytes [start, end) of the file (end exclusive), at most PIECE per buffer. */
export async function* readFileRange(handle: FileHandle, start = 0, end = handle.size): AsyncGenerator<Buffer> {
  let at = start;
  for (const e of clip(await handle.extents(), start, end)) {
    if (e.offset > at) yield* zeros(e.offset - at);
    for (let pos = e.offset; pos < e.offset + e.length; pos += PIECE) {
      yield await handle.read(pos, Math.min(PIECE, e.offset + e.length - pos));
    }
    at = e.offset + e.length;
  }
  if (end > at) yield* zeros(end - at);
}

/** Only the data extents of the file (for sparse archive entries): each extent with its bytes in pieces. */
export async function* readDataExtents(handle: FileHandle, extents: Extent[]): AsyncGenerator<Buffer> {
  for (const e of extents) {
    for (let pos = e.offset; pos < e.offset + e.length; pos += PIECE) {
      yield await handle.read(pos, Math.min(PIECE, e.offset + e.length - pos));
    }
  }
}

/** Merges adjacent/overlapping extents and clips them to the file size. */
export function dataExtents(extents: Extent[], size: number): Extent[] {
  const out: Extent[] = [];
  for (const e of [...extents].sort((a, b) => a.offset - b.offset)) {
    const end = Math.min(e.offset + e.length, size);
    if (end <= e.offset) continue;
    const last = out[out.length - 1];
    if (last && e.offset <= last.offset + last.length) last.length = Math.max(last.length, end - last.offset);
    else out.push({ offset: e.offset, length: end - e.offset });
  }
  return out;
}
