/**
 * Walks a Disk for writers: reads only the ranges its extents() say may hold data, in aligned batches with one
 * batch read ahead, and hands out the runs of units (grains, blocks) that are not all zeros. Memory use is two
 * batches, whatever the disk size.
 */
import type { Disk, Extent } from '@vmkeep/disk';
import type { ProgressCallback } from './options';

/** Consecutive non-zero units of the disk; `data.length` is a multiple of the unit except at the disk's end. */
export interface DataPiece {
  offset: number;
  data: Buffer;
}

export interface ScanOptions {
  /** Granularity of zero detection and alignment of every piece (a power of two is not required). */
  unit: number;
  /** Bytes read at once (rounded down to a multiple of unit; default 4 MiB). */
  batch?: number;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
}

const DEFAULT_BATCH = 4 * 1024 * 1024;

/**
 * The unit-aligned ranges that cover `extents`, clipped to the disk and merged. Tolerates unsorted, overlapping
 * or out-of-range extents from a sloppy source.
 */
export function alignedRuns(extents: readonly Extent[], size: number, unit: number): Extent[] {
  const spans = extents
    .filter((e) => Number.isFinite(e.offset) && Number.isFinite(e.length) && e.length > 0)
    .map((e) => ({
      start: Math.max(0, Math.floor(e.offset / unit) * unit),
      end: Math.min(size, Math.ceil((e.offset + e.length) / unit) * unit),
    }))
    .filter((s) => s.end > s.start)
    .sort((a, b) => a.start - b.start);
  const runs: Extent[] = [];
  for (const s of spans) {
    const last = runs[runs.length - 1];
    if (last && s.start <= last.offset + last.length) {
      last.length = Math.max(last.length, s.end - last.offset);
    } else {
      runs.push({ offset: s.start, length: s.end - s.start });
    }
  }
  return runs;
}

function* batches(runs: readonly Extent[], batch: number): Generator<Extent> {
  for (const run of runs) {
    for (let off = run.offset; off < run.offset + run.length; off += batch) {
      yield { offset: off, length: Math.min(batch, run.offset + run.length - off) };
    }
  }
}

/** Yields the non-zero runs of `disk` in increasing offset order. */
export async function* scanData(disk: Disk, opts: ScanOptions): AsyncGenerator<DataPiece> {
  const { unit, signal, onProgress } = opts;
  if (!Number.isSafeInteger(unit) || unit <= 0) throw new RangeError(`scan unit must be a positive integer, got ${unit}`);
  const batch = Math.max(unit, Math.floor((opts.batch ?? DEFAULT_BATCH) / unit) * unit);
  signal?.throwIfAborted();
  const zeros = Buffer.alloc(unit);
  const requests = batches(alignedRuns(await disk.extents(), disk.size, unit), batch);
  const start = (): { req: Extent; data: Promise<Buffer> } | undefined => {
    const next = requests.next();
    if (next.done) return undefined;
    const data = disk.read(next.value.offset, next.value.length);
    data.catch(() => undefined); // awaited below; this only keeps an abandoned read-ahead from going unhandled
    return { req: next.value, data };
  };
  let pending = start();
  while (pending) {
    signal?.throwIfAborted();
    const { req } = pending;
    const data = await pending.data;
    signal?.throwIfAborted();
    pending = start();
    let runStart = -1;
    for (let pos = 0; pos < data.length; pos += unit) {
      const end = Math.min(pos + unit, data.length);
      const zero = data.subarray(pos, end).equals(zeros.subarray(0, end - pos));
      if (!zero && runStart < 0) runStart = pos;
      if (zero && runStart >= 0) {
        yield { offset: req.offset + runStart, data: data.subarray(runStart, pos) };
        runStart = -1;
      }
    }
    if (runStart >= 0) yield { offset: req.offset + runStart, data: data.subarray(runStart) };
    onProgress?.(req.offset + req.length, disk.size);
  }
  onProgress?.(disk.size, disk.size);
}
