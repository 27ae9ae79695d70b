import type { Extent } from '@vmkeep/disk';

/** A piece of a range: data (may hold non-zero bytes) or a hole (reads as zeros). */
export interface Piece {
  offset: number;
  length: number;
  hole: boolean;
}

/**
 * Splits [offset, offset+length) into data and hole pieces according to sorted, non-overlapping extents,
 * stopping after `maxPieces`.
 */
export function piecesOf(extents: Extent[], offset: number, length: number, maxPieces = Infinity): Piece[] {
  const end = offset + length;
  const out: Piece[] = [];
  // First extent that ends after offset.
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (extents[mid].offset + extents[mid].length <= offset) lo = mid + 1;
    else hi = mid;
  }
  let pos = offset;
  for (let i = lo; pos < end && out.length < maxPieces; ) {
    const e = extents[i];
    if (!e || e.offset >= end) {
      out.push({ offset: pos, length: end - pos, hole: true });
      break;
    }
    if (e.offset > pos) {
      out.push({ offset: pos, length: e.offset - pos, hole: true });
      pos = e.offset;
      continue;
    }
    const stop = Math.min(e.offset + e.length, end);
    const last = out[out.length - 1];
    if (last && !last.hole && last.offset + last.length === pos) last.length += stop - pos;
    else out.push({ offset: pos, length: stop - pos, hole: false });
    pos = stop;
    i++;
  }
  return out;
}
