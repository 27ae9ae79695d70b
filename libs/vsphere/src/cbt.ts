/** Changed block tracking: reading QueryChangedDiskAreas answers (DiskChangeInfo) into checked extents. */
import type { Extent } from '@vmkeep/disk';
import { VsphereError } from './errors';
import { arrayItems, field, int, type SoapValue } from './values';

/** One QueryChangedDiskAreas answer: the part of the disk it covers and the changed areas inside it. */
export interface DiskChangeInfo {
  startOffset: number;
  length: number;
  /** Sorted, non-overlapping, inside [startOffset, startOffset + length). */
  changedAreas: Extent[];
}

/** The changeId asking for every allocated (in-use) area instead of the changes since an earlier point. */
export const ALL_ALLOCATED_CHANGE_ID = '*';

/**
 * Parses a DiskChangeInfo and checks it: a host answer covering nothing, or areas outside what it says it
 * covers, is refused (VsphereError) rather than trusted, since an incremental built on it would be wrong.
 * Areas are sorted and merged; overlaps are allowed (hosts may over-report).
 */
export function parseDiskChangeInfo(value: SoapValue, what: string): DiskChangeInfo {
  const startOffset = int(field(value, 'startOffset'));
  const length = int(field(value, 'length'));
  if (startOffset === undefined || length === undefined || startOffset < 0 || length <= 0) {
    throw new VsphereError(`${what}: QueryChangedDiskAreas answered without a valid startOffset/length`);
  }
  const end = startOffset + length;
  const areas = arrayItems(field(value, 'changedArea')).map((area) => {
    const offset = int(field(area, 'start'));
    const size = int(field(area, 'length'));
    if (offset === undefined || size === undefined || size < 0 || offset < startOffset || offset + size > end) {
      throw new VsphereError(`${what}: QueryChangedDiskAreas reported an area outside [${startOffset}, ${end})`);
    }
    return { offset, length: size };
  });
  areas.sort((a, b) => a.offset - b.offset);
  const merged: Extent[] = [];
  for (const area of areas) {
    if (area.length === 0) continue;
    const last = merged[merged.length - 1];
    if (last && area.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, area.offset + area.length - last.offset);
    } else {
      merged.push({ ...area });
    }
  }
  return { startOffset, length, changedAreas: merged };
}

/** The changed areas of a whole disk and how many QueryChangedDiskAreas calls it took. */
export interface ChangedAreas {
  areas: Extent[];
  calls: number;
}

/**
 * Loops QueryChangedDiskAreas from offset 0 until the answers cover `capacity` (the host decides how much one
 * answer covers; asking at offset == capacity would be an InvalidArgument). An answer that does not start where
 * asked, or makes no progress, is refused with a VsphereError instead of looping forever.
 */
export async function collectChangedAreas(
  query: (startOffset: number) => Promise<DiskChangeInfo>,
  capacity: number,
  what: string,
): Promise<ChangedAreas> {
  const areas: Extent[] = [];
  let offset = 0;
  let calls = 0;
  while (offset < capacity) {
    const info = await query(offset);
    calls++;
    if (info.startOffset !== offset) {
      throw new VsphereError(`${what}: QueryChangedDiskAreas answered for offset ${info.startOffset}, asked for ${offset}`);
    }
    for (const area of info.changedAreas) {
      const end = Math.min(capacity, area.offset + area.length);
      if (end > area.offset) areas.push({ offset: area.offset, length: end - area.offset });
    }
    offset = info.startOffset + info.length;
  }
  return { areas, calls };
}
