import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { MAX_DESCRIPTOR_BYTES, MAX_DESCRIPTOR_LINES, MAX_EXTENTS, MAX_VIRTUAL_BYTES, SECTOR } from './limits';

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';
export type ExtentType = 'FLAT' | 'SPARSE' | 'ZERO' | 'VMFS' | 'VMFSSPARSE' | 'VMFSRDM' | 'VMFSRAW' | 'SESPARSE';

export interface DescriptorExtent {
  access: ExtentAccess;
  /** Length in 512-byte sectors. */
  sectors: number;
  type: ExtentType;
  /** File name as written (relative to the descriptor); absent for ZERO. */
  file?: string;
  /** Start inside the file, in sectors (FLAT only; 0 otherwise). */
  offset: number;
  /** 1-based line number in the descriptor. */
  line: number;
}

export interface VmdkGeometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

export interface VmdkDescriptor {
  version: number;
  createType: string;
  /** Content ID, 8 lower-case hex digits. */
  cid: string;
  /** Parent's content ID; undefined when the disk has no parent (ffffffff). */
  parentCid?: string;
  parentFileNameHint?: string;
  extents: DescriptorExtent[];
  /** Sum of the extents, in bytes. */
  size: number;
  /** Header keys (encoding, isNativeSnapshot, changeTrackPath, ...) with quotes removed. */
  header: Record<string, string>;
  /** DDB entries without the "ddb." prefix. */
  ddb: Record<string, string>;
  adapterType?: string;
  virtualHWVersion?: string;
  geometry?: VmdkGeometry;
  uuid?: string;
  longContentID?: string;
  logicalSectorSize?: number;
  physicalSectorSize?: number;
}

export const NO_PARENT_CID = 'ffffffff';

/** createTypes we read, and those we refuse because they point at devices rather than files. */
export const READABLE_CREATE_TYPES = [
  'monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized', 'vmfs',
  'vmfsSparse', 'seSparse', 'vmfsThin', 'vmfsEagerZeroedThick', 'vmfsPreallocated', 'vmfsRaw', 'custom',
];
const DEVICE_CREATE_TYPES = ['vmfsRawDeviceMap', 'vmfsPassthroughRawDeviceMap', 'fullDevice', 'partitionedDevice'];

const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\S+)\s+(\S+)(.*)$/;
const EXTENT_TAIL = /^\s+"([^"]*)"(?:\s+(\S+))?\s*$/;
const KEY_VALUE = /^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(.*)$/;
const EXTENT_TYPES: ExtentType[] = ['FLAT', 'SPARSE', 'ZERO', 'VMFS', 'VMFSSPARSE', 'VMFSRDM', 'VMFSRAW', 'SESPARSE'];

function unquote(value: string): string {
  const v = value.trim();
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

function decimal(text: string | undefined, what: string, file: string, line: number): number {
  if (text === undefined || !/^\d{1,16}$/.test(text)) {
    throw new DiskFormatError(`${what} "${text ?? ''}" is not a number`, file, `descriptor line ${line}`);
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n * SECTOR > MAX_VIRTUAL_BYTES) {
    throw new DiskFormatError(`${what} ${text} is absurd`, file, `descriptor line ${line}`);
  }
  return n;
}

function parseExtent(match: RegExpExecArray, file: string, line: number): DescriptorExtent {
  const access = match[1] as ExtentAccess;
  const sectors = decimal(match[2], 'extent size', file, line);
  const type = match[3] as ExtentType;
  if (!EXTENT_TYPES.includes(type)) {
    throw new UnsupportedFormatError(`unknown extent type "${match[3]}"`, file, `descriptor line ${line}`);
  }
  const tail = match[4];
  if (type === 'ZERO') {
    if (tail.trim() !== '') throw new DiskFormatError('ZERO extent takes no file', file, `descriptor line ${line}`);
    return { access, sectors, type, offset: 0, line };
  }
  const t = EXTENT_TAIL.exec(tail);
  if (!t) throw new DiskFormatError(`${type} extent needs a quoted file name`, file, `descriptor line ${line}`);
  if (type === 'FLAT' && t[2] === undefined) {
    throw new DiskFormatError('FLAT extent needs an offset', file, `descriptor line ${line}`);
  }
  const offset = t[2] === undefined ? 0 : decimal(t[2], 'extent offset', file, line);
  return { access, sectors, type, file: t[1], offset, line };
}

function positive(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,9}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * Parses a VMDK text descriptor (a descriptor file, or the text embedded in a sparse extent, NUL-terminated).
 * Validates the header, every extent line and the DDB; refuses NOACCESS extents, device-backed createTypes,
 * encrypted disks, oversized or absurd descriptors with typed errors naming `file` and the line.
 */
export function parseDescriptor(input: Buffer | string, file: string): VmdkDescriptor {
  let buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  if (buf.length > MAX_DESCRIPTOR_BYTES) {
    throw new DiskFormatError(`descriptor of ${buf.length} bytes exceeds ${MAX_DESCRIPTOR_BYTES}`, file, 'descriptor');
  }
  // The text ends at the first NUL, as for qemu and VMware: what follows in the descriptor area is padding, and
  // qemu-img does not always zero it.
  const nul = buf.indexOf(0);
  if (nul >= 0) buf = buf.subarray(0, nul);
  const lines = buf.toString('utf8').split('\n');
  if (lines.length > MAX_DESCRIPTOR_LINES) {
    throw new DiskFormatError(`descriptor has ${lines.length} lines (limit ${MAX_DESCRIPTOR_LINES})`, file, 'descriptor');
  }

  const header: Record<string, string> = {};
  const ddb: Record<string, string> = {};
  const extents: DescriptorExtent[] = [];
  let sawVersion = false;
  lines.forEach((raw, index) => {
    const line = index + 1;
    const text = raw.replace(/\r$/, '').trim();
    if (text === '' || text.startsWith('#')) return;
    const ext = EXTENT_LINE.exec(text);
    if (ext) {
      if (extents.length >= MAX_EXTENTS) {
        throw new DiskFormatError(`more than ${MAX_EXTENTS} extents`, file, `descriptor line ${line}`);
      }
      extents.push(parseExtent(ext, file, line));
      return;
    }
    const kv = KEY_VALUE.exec(text);
    if (!kv) throw new DiskFormatError(`unrecognised line "${text.slice(0, 60)}"`, file, `descriptor line ${line}`);
    const [, key, value] = kv;
    if (key.startsWith('ddb.')) ddb[key.slice(4)] = unquote(value);
    else {
      if (!sawVersion && key !== 'version') {
        throw new DiskFormatError('first entry is not "version="', file, `descriptor line ${line}`);
      }
      sawVersion = true;
      header[key] = unquote(value);
    }
  });

  if (!sawVersion) throw new DiskFormatError('no "version=" line: not a VMDK descriptor', file, 'descriptor');
  const version = Number(header.version);
  if (![1, 2, 3].includes(version) || !/^\d$/.test(header.version)) {
    throw new UnsupportedFormatError(`descriptor version "${header.version}"`, file, 'descriptor');
  }
  const createType = header.createType;
  if (!createType) throw new DiskFormatError('no createType', file, 'descriptor');
  if (DEVICE_CREATE_TYPES.includes(createType)) {
    throw new UnsupportedFormatError(`createType "${createType}" maps a device, not a file`, file, 'descriptor');
  }
  if (!READABLE_CREATE_TYPES.includes(createType)) {
    throw new UnsupportedFormatError(`unknown createType "${createType}"`, file, 'descriptor');
  }
  if (header.encryptionKeys !== undefined) {
    throw new UnsupportedFormatError('encrypted disks are not supported', file, 'descriptor');
  }
  const cid = parseCid(header.CID, 'CID', file);
  const parentCidRaw = header.parentCID === undefined ? NO_PARENT_CID : parseCid(header.parentCID, 'parentCID', file);
  const parentCid = parentCidRaw === NO_PARENT_CID ? undefined : parentCidRaw;
  const parentFileNameHint = header.parentFileNameHint || undefined;
  if (parentCid && !parentFileNameHint) {
    throw new DiskFormatError('parentCID is set but parentFileNameHint is missing', file, 'descriptor');
  }

  if (extents.length === 0) throw new DiskFormatError('no extents', file, 'descriptor');
  let sectors = 0;
  for (const e of extents) {
    if (e.access === 'NOACCESS') {
      throw new UnsupportedFormatError('NOACCESS extent: the disk cannot be read', file, `descriptor line ${e.line}`);
    }
    if (e.type === 'VMFSRDM' || e.type === 'VMFSRAW') {
      throw new UnsupportedFormatError(`${e.type} extent maps a device, not a file`, file, `descriptor line ${e.line}`);
    }
    sectors += e.sectors;
    if (sectors * SECTOR > MAX_VIRTUAL_BYTES) {
      throw new DiskFormatError(`disk of ${sectors} sectors is absurd`, file, `descriptor line ${e.line}`);
    }
  }

  const desc: VmdkDescriptor = {
    version, createType, cid, parentCid, parentFileNameHint, extents, size: sectors * SECTOR, header, ddb,
  };
  desc.adapterType = ddb.adapterType;
  desc.virtualHWVersion = ddb.virtualHWVersion;
  const [c, h, s] = ['cylinders', 'heads', 'sectors'].map((k) => positive(ddb[`geometry.${k}`]));
  if (c !== undefined && h !== undefined && s !== undefined) desc.geometry = { cylinders: c, heads: h, sectors: s };
  desc.uuid = ddb.uuid;
  desc.longContentID = ddb.longContentID;
  desc.logicalSectorSize = positive(ddb.logicalSectorSize);
  desc.physicalSectorSize = positive(ddb.physicalSectorSize);
  return desc;
}

function parseCid(value: string | undefined, key: string, file: string): string {
  if (value === undefined) throw new DiskFormatError(`no ${key}`, file, 'descriptor');
  if (!/^[0-9a-fA-F]{1,8}$/.test(value)) throw new DiskFormatError(`${key} "${value}" is not hex`, file, 'descriptor');
  return value.toLowerCase().padStart(8, '0');
}

/** Flattens the descriptor into ImageInfo.metadata entries. */
export function descriptorMetadata(d: VmdkDescriptor): Record<string, string | number | boolean> {
  const m: Record<string, string | number | boolean> = { createType: d.createType, descriptorVersion: d.version, cid: d.cid };
  if (d.parentCid) m.parentCid = d.parentCid;
  if (d.parentFileNameHint) m.parentFileNameHint = d.parentFileNameHint;
  if (d.adapterType) m.adapterType = d.adapterType;
  if (d.virtualHWVersion) m.virtualHWVersion = d.virtualHWVersion;
  if (d.geometry) m.geometry = `${d.geometry.cylinders}/${d.geometry.heads}/${d.geometry.sectors}`;
  if (d.uuid) m.uuid = d.uuid;
  if (d.longContentID) m.longContentID = d.longContentID;
  if (d.logicalSectorSize) m.logicalSectorSize = d.logicalSectorSize;
  if (d.physicalSectorSize) m.physicalSectorSize = d.physicalSectorSize;
  if (d.header.changeTrackPath) m.changeTrackPath = d.header.changeTrackPath;
  for (const [k, v] of Object.entries(d.ddb)) m[`ddb.${k}`] = v;
  return m;
}
