import type { Extent } from '@vmkeep/disk';

/** Appends a range to a sorted list, merging it with the last one when they touch. */
export function pushRange(list: Extent[], offset: number, length: number): void {
  if (length <= 0) return;
  const last = list[list.length - 1];
  if (last && last.offset + last.length === offset) last.length += length;
  else list.push({ offset, length });
}

/** Sorts and merges ranges. */
export function normalizeRanges(ranges: Extent[]): Extent[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}

/** `a` minus `b`; both sorted and merged. */
export function subtractRanges(a: Extent[], b: Extent[]): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const r of a) {
    let start = r.offset;
    const end = r.offset + r.length;
    while (j < b.length && b[j].offset + b[j].length <= start) j++;
    let k = j;
    while (k < b.length && b[k].offset < end) {
      if (b[k].offset > start) pushRange(out, start, b[k].offset - start);
      start = Math.max(start, b[k].offset + b[k].length);
      k++;
    }
    if (start < end) pushRange(out, start, end - start);
  }
  return out;
}

/** Sum of the lengths. */
export function totalLength(ranges: Extent[]): number {
  return ranges.reduce((sum, r) => sum + r.length, 0);
}

/** Ranges clipped to [0, limit). */
export function clipRanges(ranges: Extent[], limit: number): Extent[] {
  const out: Extent[] = [];
  for (const r of ranges) {
    if (r.offset >= limit) break;
    pushRange(out, r.offset, Math.min(r.length, limit - r.offset));
  }
  return out;
}
