/**
 * A logical volume as a Disk: reads are split over its segments and, in striped segments, over the stripe
 * chunks, and sent to the physical volumes' windows. Every PV range was checked against the PV's extents when
 * the VG was parsed, and is checked against the PV volume's size when the LV is built.
 */
import { checkRange, Disk, Extent } from '@vmkeep/disk';
import { FileSystemError } from '../errors';
import type { Volume } from '../types';
import type { VgLv, VolumeGroup } from './vg';

/** One contiguous stretch of a segment's stripe area: `length` bytes of PV `disk` from `pvOffset`. */
interface Area {
  disk: Disk;
  /** Byte offset of the area's first extent on the PV volume. */
  pvOffset: number;
}

interface MappedSegment {
  start: number;
  length: number;
  stripeSize: number;
  areas: Area[];
}

export class LogicalVolume implements Volume {
  readonly start = 0;
  readonly scheme = 'lvm' as const;
  readonly type: string;
  /** "vg/lv". */
  readonly name: string;
  /** LV UUID (without dashes). */
  readonly guid: string;
  readonly size: number;
  readonly vgName: string;
  readonly vgUuid: string;
  readonly lvName: string;

  private constructor(
    readonly index: number,
    vg: VolumeGroup,
    lv: VgLv,
    private readonly segments: MappedSegment[],
  ) {
    this.vgName = vg.name;
    this.vgUuid = vg.uuid;
    this.lvName = lv.name;
    this.name = `${vg.name}/${lv.name}`;
    this.guid = lv.uuid;
    this.type = segments.some((s) => s.areas.length > 1) ? 'lvm2-striped' : 'lvm2-linear';
    const last = segments[segments.length - 1];
    this.size = last.start + last.length;
  }

  /** Builds the LV over the PV volumes (by PV name); the caller has checked that every PV it uses is present. */
  static build(index: number, vg: VolumeGroup, lv: VgLv, pvDisks: Map<string, Disk>): LogicalVolume {
    const segments = lv.segments.map((seg) => {
      const areaLength = (seg.extentCount / seg.stripes.length) * vg.extentSize;
      const areas = seg.stripes.map((st) => {
        const pv = vg.pvs.get(st.pv);
        const disk = pvDisks.get(st.pv);
        if (!pv || !disk) throw new FileSystemError('lvm2', `logical volume ${vg.name}/${lv.name}`, `physical volume ${st.pv} is not available`);
        const pvOffset = pv.peStart + st.extent * vg.extentSize;
        if (pvOffset + areaLength > disk.size) {
          throw new FileSystemError('lvm2', `logical volume ${vg.name}/${lv.name}`, `extents ${st.extent}+${seg.extentCount / seg.stripes.length} of ${st.pv} end at byte ${pvOffset + areaLength}, beyond the ${disk.size}-byte physical volume`);
        }
        return { disk, pvOffset };
      });
      return { start: seg.startExtent * vg.extentSize, length: seg.extentCount * vg.extentSize, stripeSize: seg.stripeSize, areas };
    });
    return new LogicalVolume(index, vg, lv, segments);
  }

  /** Maps `length` bytes at `offset` (inside one segment) to the PV piece that holds its first byte. */
  private locate(seg: MappedSegment, offset: number, length: number): { area: Area; at: number; length: number } {
    if (seg.areas.length === 1) return { area: seg.areas[0], at: seg.areas[0].pvOffset + offset, length };
    const chunk = Math.floor(offset / seg.stripeSize);
    const within = offset - chunk * seg.stripeSize;
    const area = seg.areas[chunk % seg.areas.length];
    const row = Math.floor(chunk / seg.areas.length);
    return { area, at: area.pvOffset + row * seg.stripeSize + within, length: Math.min(length, seg.stripeSize - within) };
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, `logical volume ${this.name}`, offset, length);
    const parts: Buffer[] = [];
    let pos = offset;
    const end = offset + length;
    let i = this.segmentAt(pos);
    while (pos < end) {
      const seg = this.segments[i];
      const segEnd = seg.start + seg.length;
      if (pos >= segEnd) {
        i++;
        continue;
      }
      const piece = this.locate(seg, pos - seg.start, Math.min(end, segEnd) - pos);
      parts.push(await piece.area.disk.read(piece.at, piece.length));
      pos += piece.length;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, length);
  }

  private segmentAt(offset: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid].start <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Data ranges: exact for linear segments (mapped from the PV's extents), whole segments for striped ones. */
  async extents(): Promise<Extent[]> {
    const out: Extent[] = [];
    const push = (offset: number, length: number) => {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === offset) last.length += length;
      else if (length > 0) out.push({ offset, length });
    };
    const cache = new Map<Disk, Extent[]>();
    for (const seg of this.segments) {
      if (seg.areas.length > 1) {
        push(seg.start, seg.length);
        continue;
      }
      const { disk, pvOffset } = seg.areas[0];
      let pvExtents = cache.get(disk);
      if (!pvExtents) cache.set(disk, (pvExtents = await disk.extents()));
      for (const e of pvExtents) {
        const from = Math.max(e.offset, pvOffset);
        const to = Math.min(e.offset + e.length, pvOffset + seg.length);
        if (to > from) push(seg.start + from - pvOffset, to - from);
      }
    }
    return out;
  }

  async close(): Promise<void> {}
}
