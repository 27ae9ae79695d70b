/**
 * The parts of an OVF descriptor needed to find and describe disks: References/File and DiskSection/Disk.
 * OVF is XML; these elements are flat with attributes only, so a small tag scanner is enough (no entity
 * expansion beyond the predefined ones, no DTDs: nothing for a hostile descriptor to blow up).
 */
import { DiskFormatError } from '../errors';

export interface OvfFile {
  id: string;
  href: string;
  size?: number;
  compression?: string;
}

export interface OvfDisk {
  diskId: string;
  fileRef?: string;
  /** Capacity in bytes (capacity × capacityAllocationUnits). */
  capacity: number;
  populatedSize?: number;
  /** Format URI, e.g. http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized */
  format?: string;
  file?: OvfFile;
}

export interface OvfDescriptor {
  files: OvfFile[];
  disks: OvfDisk[];
}

export const MAX_OVF_SIZE = 16 * 1024 * 1024;

function decode(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);/g, (_, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
    }
    return ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[e];
  });
}

/** Attributes by local name (namespace prefixes dropped). */
function attributes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)\s*=\s*("([^"]*)"|'([^']*)')/g)) {
    out.set(m[2], decode(m[4] ?? m[5] ?? ''));
  }
  return out;
}

function section(xml: string, name: string): string | undefined {
  const m = new RegExp(`<([A-Za-z_][\\w.-]*:)?${name}[\\s>][\\s\\S]*?</([A-Za-z_][\\w.-]*:)?${name}\\s*>`).exec(xml);
  return m?.[0];
}

function elements(xml: string, name: string): Map<string, string>[] {
  const re = new RegExp(`<([A-Za-z_][\\w.-]*:)?${name}(\\s[^>]*?)?/?>`, 'g');
  return [...xml.matchAll(re)].map((m) => attributes(m[2] ?? ''));
}

/** Multiplier of OVF capacityAllocationUnits ("byte", "byte * 2^30", "GigaBytes", ...). */
export function allocationUnits(units: string | undefined, file: string): number {
  if (!units || units.trim() === 'byte') return 1;
  const pow = /^byte\s*\*\s*(\d+)\s*\^\s*(\d+)$/.exec(units.trim());
  if (pow) {
    const v = Number(pow[1]) ** Number(pow[2]);
    if (Number.isSafeInteger(v) && v > 0) return v;
  }
  const mult = /^byte\s*\*\s*(\d+)$/.exec(units.trim());
  if (mult && Number(mult[1]) > 0) return Number(mult[1]);
  const words: Record<string, number> = { KiloBytes: 2 ** 10, MegaBytes: 2 ** 20, GigaBytes: 2 ** 30, TeraBytes: 2 ** 40 };
  if (words[units.trim()]) return words[units.trim()];
  throw new DiskFormatError(`unknown capacityAllocationUnits "${units}"`, file, 'OVF DiskSection');
}

function number(value: string | undefined, what: string, file: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new DiskFormatError(`invalid ${what} "${value}"`, file, 'OVF');
  return n;
}

export function parseOvf(xml: string, file: string): OvfDescriptor {
  const body = xml.replace(/<!--[\s\S]*?-->/g, '');
  if (!/<([A-Za-z_][\w.-]*:)?Envelope[\s>]/.test(body)) throw new DiskFormatError('no Envelope element', file, 'OVF');
  const files: OvfFile[] = elements(section(body, 'References') ?? '', 'File').map((a) => {
    const id = a.get('id');
    const href = a.get('href');
    if (!id || !href) throw new DiskFormatError('File without id or href', file, 'OVF References');
    return { id, href, size: number(a.get('size'), 'file size', file), compression: a.get('compression') };
  });
  const disks: OvfDisk[] = elements(section(body, 'DiskSection') ?? '', 'Disk').map((a) => {
    const diskId = a.get('diskId');
    if (!diskId) throw new DiskFormatError('Disk without diskId', file, 'OVF DiskSection');
    const raw = number(a.get('capacity'), 'capacity', file);
    if (raw === undefined) throw new DiskFormatError(`disk ${diskId} has no capacity`, file, 'OVF DiskSection');
    const capacity = raw * allocationUnits(a.get('capacityAllocationUnits'), file);
    if (!Number.isSafeInteger(capacity)) throw new DiskFormatError(`disk ${diskId} capacity is out of range`, file, 'OVF DiskSection');
    const fileRef = a.get('fileRef');
    return {
      diskId,
      fileRef,
      capacity,
      populatedSize: number(a.get('populatedSize'), 'populatedSize', file),
      format: a.get('format'),
      file: fileRef ? files.find((f) => f.id === fileRef) : undefined,
    };
  });
  for (const d of disks) {
    if (d.fileRef && !d.file) throw new DiskFormatError(`disk ${d.diskId} refers to unknown file "${d.fileRef}"`, file, 'OVF DiskSection');
  }
  return { files, disks };
}
