import type { Extent } from '@vmkeep/disk';
import { DiskFormatError } from '../errors';

/**
 * What one piece of a read holds: bytes, zeros this layer vouches for, or nothing (the range is not allocated
 * in this layer and falls through to the parent, or reads as zeros without one).
 */
export type Piece = { kind: 'data'; data: Buffer } | { kind: 'zero'; length: number } | { kind: 'absent'; length: number };

export function pieceLength(piece: Piece): number {
  return piece.kind === 'data' ? piece.data.length : piece.length;
}

/** Allocation map of one extent, in bytes relative to the extent's start. */
export interface ExtentMap {
  /** Ranges whose bytes this layer stores. */
  data: Extent[];
  /** Ranges this layer marks as zero (they hide the parent). */
  zero: Extent[];
}

/** One extent of a VMDK (a flat file, a sparse file, a ZERO range, a delta) covering `length` virtual bytes. */
export interface VmdkExtent {
  readonly length: number;
  /** Files read by this extent, as named in the descriptor (for info). */
  readonly files: string[];
  /** Pieces covering exactly [offset, offset + length) of the extent, in order. */
  read(offset: number, length: number): Promise<Piece[]>;
  map(): Promise<ExtentMap>;
  close(): Promise<void>;
}

/** Builds the piece list from per-range results while merging neighbours of the same kind (not data). */
export class PieceList {
  readonly pieces: Piece[] = [];

  data(buf: Buffer): void {
    if (buf.length) this.pieces.push({ kind: 'data', data: buf });
  }

  empty(kind: 'zero' | 'absent', length: number): void {
    if (length <= 0) return;
    const last = this.pieces[this.pieces.length - 1];
    if (last && last.kind === kind) last.length += length;
    else this.pieces.push({ kind, length });
  }
}

/** Refuses a read outside [0, extent.length). */
export function checkExtentRead(extent: { length: number }, name: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > extent.length) {
    throw new DiskFormatError(`read (${offset}, ${length}) outside the extent`, name, 'extent', offset);
  }
}
