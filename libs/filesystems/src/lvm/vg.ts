/**
 * The volume-group model read from LVM2 metadata text: extent size, physical volumes (UUID, pe_start, pe_count)
 * and logical volumes with their segments. Everything is checked here, before any LV is read: segments must be
 * contiguous from extent 0, stripes must name known PVs and stay inside their extents, sizes must be safe
 * integers.
 */
import { FileSystemError } from '../errors';
import { LvmSection, parseLvmText } from './text';
import { SECTOR } from './label';

const MAX_LVS = 4096;
const MAX_SEGMENTS = 65536;
const MAX_STRIPES = 128;

export interface VgPv {
  /** Name inside the metadata ("pv0"). */
  name: string;
  /** UUID without dashes (as in the PV label). */
  uuid: string;
  /** Device path the host last saw the PV on (only a hint). */
  device: string;
  /** First extent's byte offset on the PV. */
  peStart: number;
  peCount: number;
}

export interface LvStripe {
  pv: string;
  /** First physical extent of this stripe's area on the PV. */
  extent: number;
}

export interface LvSegment {
  startExtent: number;
  extentCount: number;
  type: string;
  /** Stripe (chunk) size in bytes; 0 for a linear segment. */
  stripeSize: number;
  stripes: LvStripe[];
  /** For a "snapshot" segment: the LV holding the copy-on-write store. */
  cow?: string;
}

export interface VgLv {
  name: string;
  uuid: string;
  visible: boolean;
  segments: LvSegment[];
}

export interface VolumeGroup {
  name: string;
  /** UUID without dashes. */
  uuid: string;
  seqno: number;
  /** Extent size in bytes. */
  extentSize: number;
  pvs: Map<string, VgPv>;
  lvs: VgLv[];
}

export const stripDashes = (uuid: string): string => uuid.replace(/-/g, '');

/** Parses and checks the metadata text of one VG. `offset` locates the text on its disk, for errors. */
export function parseVolumeGroup(text: string, offset?: number): VolumeGroup {
  const root = parseLvmText(text, offset);
  const fail = (message: string) => new FileSystemError('lvm2', 'VG metadata', message, offset);
  if (root.sections.size !== 1) throw fail(`expected one volume group section, found ${root.sections.size}`);
  const [[name, vg]] = [...root.sections];
  const extentSectors = vg.int('extent_size', 2 ** 32);
  if (extentSectors === 0) throw fail(`${name}.extent_size is 0`);
  const extentSize = extentSectors * SECTOR;
  const pvs = new Map<string, VgPv>();
  for (const [pvName, s] of vg.section('physical_volumes').sections) {
    const peStart = s.int('pe_start', 2 ** 40) * SECTOR;
    const peCount = s.int('pe_count', 2 ** 32);
    if (peStart + peCount * extentSize > Number.MAX_SAFE_INTEGER) throw fail(`${s.path}: extents end beyond 2^53 bytes`);
    pvs.set(pvName, { name: pvName, uuid: stripDashes(s.str('id')), device: s.str('device', ''), peStart, peCount });
  }
  const lvs: VgLv[] = [];
  const lvSections = vg.sections.get('logical_volumes')?.sections ?? new Map<string, LvmSection>();
  if (lvSections.size > MAX_LVS) throw fail(`more than ${MAX_LVS} logical volumes`);
  for (const [lvName, s] of lvSections) lvs.push(parseLv(lvName, s, pvs, extentSize, fail));
  return { name, uuid: stripDashes(vg.str('id')), seqno: vg.int('seqno'), extentSize, pvs, lvs };
}

function parseLv(name: string, s: LvmSection, pvs: Map<string, VgPv>, extentSize: number, fail: (m: string) => FileSystemError): VgLv {
  const count = s.int('segment_count', MAX_SEGMENTS);
  if (count === 0) throw fail(`${s.path}: segment_count is 0`);
  const segments: LvSegment[] = [];
  let next = 0;
  for (let i = 1; i <= count; i++) {
    const seg = s.section(`segment${i}`);
    const startExtent = seg.int('start_extent', 2 ** 40);
    const extentCount = seg.int('extent_count', 2 ** 40);
    if (startExtent !== next) throw fail(`${seg.path}: starts at extent ${startExtent}, expected ${next}`);
    if (extentCount === 0) throw fail(`${seg.path}: extent_count is 0`);
    next = startExtent + extentCount;
    if (next * extentSize > Number.MAX_SAFE_INTEGER) throw fail(`${seg.path}: the logical volume ends beyond 2^53 bytes`);
    const type = seg.str('type');
    const segment: LvSegment = { startExtent, extentCount, type, stripeSize: 0, stripes: [] };
    if (type === 'snapshot') segment.cow = seg.str('cow', '');
    if (type === 'striped') {
      const stripeCount = seg.int('stripe_count', MAX_STRIPES);
      if (stripeCount === 0) throw fail(`${seg.path}: stripe_count is 0`);
      if (extentCount % stripeCount !== 0) throw fail(`${seg.path}: ${extentCount} extents do not split into ${stripeCount} stripes`);
      const list = seg.array('stripes');
      if (list.length !== stripeCount * 2) throw fail(`${seg.path}: stripes holds ${list.length} values, expected ${stripeCount * 2} (a PV name and an extent per stripe)`);
      for (let k = 0; k < stripeCount; k++) {
        const pv = list[k * 2];
        const extent = list[k * 2 + 1];
        if (typeof pv !== 'string' || !pvs.has(pv)) throw fail(`${seg.path}: stripe ${k} names unknown physical volume ${JSON.stringify(pv)}`);
        if (typeof extent !== 'number' || !Number.isSafeInteger(extent) || extent < 0) throw fail(`${seg.path}: stripe ${k} has an invalid start extent`);
        const pvInfo = pvs.get(pv) as VgPv;
        if (extent + extentCount / stripeCount > pvInfo.peCount) {
          throw fail(`${seg.path}: stripe ${k} needs extents ${extent}..${extent + extentCount / stripeCount - 1} of ${pv}, which has ${pvInfo.peCount}`);
        }
        segment.stripes.push({ pv, extent });
      }
      if (stripeCount > 1) {
        const sectors = seg.int('stripe_size', 2 ** 31);
        if (sectors === 0 || (sectors & (sectors - 1)) !== 0) throw fail(`${seg.path}: stripe_size ${sectors} is not a power of two`);
        segment.stripeSize = sectors * SECTOR;
        if (((extentCount / stripeCount) * extentSize) % segment.stripeSize !== 0) throw fail(`${seg.path}: stripe area is not a whole number of ${segment.stripeSize}-byte stripes`);
      }
    }
    segments.push(segment);
  }
  return { name, uuid: stripDashes(s.str('id')), visible: s.strings('status').includes('VISIBLE'), segments };
}
