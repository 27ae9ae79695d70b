/**
 * Reads a range of a guest file in pieces, a few pieces ahead of the consumer; holes (outside the file's extents)
 * are produced as zeros, never read.
 */
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

/** Reads in flight ahead of the consumer: the next pieces load while the current one is sent. */
export const READ_AHEAD = 4;

/** A piece of the output: bytes to read at `offset`, or `length` zeros (a hole). */
interface Piece {
  offset: number;
  length: number;
  hole: boolean;
}

function* piecesOf(offset: number, length: number, hole: boolean): Generator<Piece> {
  for (let pos = offset; pos < offset + length; pos += PIECE) yield { offset: pos, length: Math.min(PIECE, offset + length - pos), hole };
}

/**
 * The pieces' bytes in order, with up to READ_AHEAD reads in flight (the file systems' handles keep no cursor, so
 * concurrent reads are safe). A failed read is thrown when its turn comes; reads still in flight when the consumer
 * stops are left to finish and dropped.
 */
async function* readPieces(handle: FileHandle, pieces: Iterable<Piece>): AsyncGenerator<Buffer> {
  const source = pieces[Symbol.iterator]();
  const queue: Promise<Buffer>[] = [];
  const fill = () => {
    while (queue.length < READ_AHEAD) {
      const next = source.next();
      if (next.done) return;
      const { offset, length, hole } = next.value;
      const read = hole ? Promise.resolve(length === PIECE ? ZEROS : ZEROS.subarray(0, length)) : handle.read(offset, length);
      read.catch(() => undefined); // observed when its turn comes (or never, if the consumer stops first)
      queue.push(read);
    }
  };
  fill();
  while (queue.length) {
    const read = queue.shift()!;
    fill();
    yield await read;
  }
}

function* rangePieces(extents: Extent[], start: number, end: number): Generator<Piece> {
  let at = start;
  for (const e of clip(extents, start, end)) {
    if (e.offset > at) yield* piecesOf(at, e.offset - at, true);
    yield* piecesOf(e.offset, e.length, false);
    at = e.offset + e.length;
  }
  if (end > at) yield* piecesOf(at, end - at, true);
}

/** The bytes [start, end) of the file (end exclusive), at most PIECE per buffer, read ahead. */
export async function* readFileRange(handle: FileHandle, start = 0, end = handle.size): AsyncGenerator<Buffer> {
  yield* readPieces(handle, rangePieces(await handle.extents(), start, end));
}

/** Only the data extents of the file (for sparse archive entries): each extent with its bytes in pieces. */
export async function* readDataExtents(handle: FileHandle, extents: Extent[]): AsyncGenerator<Buffer> {
  yield* readPieces(handle, (function* () {
    for (const e of extents) yield* piecesOf(e.offset, e.length, false);
  })());
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
