/** MFT (FILE) and index (INDX) records: update-sequence fixups, record headers and attribute headers. */
import { FileSystemError } from '../errors';
import { ClusterRun, decodeRuns } from './runs';

export const ATTR = {
  standardInformation: 0x10,
  attributeList: 0x20,
  fileName: 0x30,
  volumeName: 0x60,
  volumeInformation: 0x70,
  data: 0x80,
  indexRoot: 0x90,
  indexAllocation: 0xa0,
  bitmap: 0xb0,
  reparsePoint: 0xc0,
  loggedUtilityStream: 0x100,
} as const;

export const ATTR_FLAG = { compressed: 0x0001, encrypted: 0x4000, sparse: 0x8000 } as const;

export interface Attribute {
  type: number;
  name: string;
  flags: number;
  id: number;
  /** Byte offset of the attribute header on the volume (for errors). */
  offset: number;
  /** Resident value, or undefined for a non-resident attribute. */
  value?: Buffer;
  /** Non-resident: first VCN this piece maps, its runs, and (in the first piece) sizes and compression unit. */
  startVcn: number;
  runs: ClusterRun[];
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
  compressionUnit: number;
}

export interface MftRecord {
  number: number;
  sequence: number;
  links: number;
  inUse: boolean;
  isDirectory: boolean;
  /** Record number of the base record (0 when this is a base record). */
  base: number;
  attributes: Attribute[];
}

const FIXUP_STRIDE = 512;

/** Checks and undoes the update-sequence array of a FILE or INDX record in place. */
export function applyFixup(buf: Buffer, magic: string, structure: string, offset: number): void {
  const fail = (message: string, at: number) => new FileSystemError('ntfs', structure, message, offset + at);
  if (buf.toString('latin1', 0, 4) !== magic) throw fail(`bad signature (expected ${magic})`, 0);
  const usaOffset = buf.readUInt16LE(4);
  const usaCount = buf.readUInt16LE(6);
  const sectors = buf.length / FIXUP_STRIDE;
  if (usaCount !== sectors + 1 || usaOffset < 8 || (usaOffset & 1) !== 0 || usaOffset + usaCount * 2 > FIXUP_STRIDE - 2) {
    throw fail(`update sequence array (offset ${usaOffset}, ${usaCount} entries) does not fit a ${buf.length}-byte record`, 4);
  }
  const usn = buf.readUInt16LE(usaOffset);
  for (let i = 0; i < sectors; i++) {
    const at = i * FIXUP_STRIDE + FIXUP_STRIDE - 2;
    if (buf.readUInt16LE(at) !== usn) throw fail(`update sequence mismatch in sector ${i} (torn write or damage)`, at);
    buf.writeUInt16LE(buf.readUInt16LE(usaOffset + 2 + i * 2), at);
  }
}

function u64(buf: Buffer, at: number, fail: (m: string, at: number) => FileSystemError): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`64-bit value ${v} is out of range`, at);
  return Number(v);
}

/** Parses a fixed-up FILE record at volume byte `offset`; `clusters` bounds its run lists. */
export function parseRecord(buf: Buffer, number: number, offset: number, clusters: number): MftRecord {
  const structure = `MFT record ${number}`;
  const fail = (message: string, at: number) => new FileSystemError('ntfs', structure, message, offset + at);
  const first = buf.readUInt16LE(0x14);
  const used = buf.readUInt32LE(0x18);
  if (used > buf.length || first < 0x18 || first + 8 > used) throw fail(`attribute offset ${first} / used size ${used} are invalid`, 0x14);
  const stored = buf.readUInt32LE(0x2c);
  const recordNumberKnown = buf.readUInt16LE(4) >= 0x30;
  if (recordNumberKnown && stored !== number % 2 ** 32) throw fail(`holds record number ${stored}, expected ${number}`, 0x2c);
  const flags = buf.readUInt16LE(0x16);
  const attributes: Attribute[] = [];
  let at = first;
  while (at + 4 <= used) {
    const type = buf.readUInt32LE(at);
    if (type === 0xffffffff) break;
    if (at + 16 > used) throw fail('attribute header runs past the used part of the record', at);
    const length = buf.readUInt32LE(at + 4);
    if (length < 16 || (length & 7) !== 0 || at + length > used) throw fail(`attribute length ${length} is invalid`, at);
    const nonResident = buf[at + 8];
    const nameLength = buf[at + 9];
    const nameOffset = buf.readUInt16LE(at + 10);
    if (nameLength && nameOffset + nameLength * 2 > length) throw fail('attribute name runs past the attribute', at);
    const attr: Attribute = {
      type,
      name: nameLength ? buf.toString('utf16le', at + nameOffset, at + nameOffset + nameLength * 2) : '',
      flags: buf.readUInt16LE(at + 12),
      id: buf.readUInt16LE(at + 14),
      offset: offset + at,
      startVcn: 0,
      runs: [],
      allocatedSize: 0,
      dataSize: 0,
      initializedSize: 0,
      compressionUnit: 0,
    };
    if (nonResident === 0) {
      if (length < 24) throw fail('resident attribute header is too short', at);
      const valueLength = buf.readUInt32LE(at + 16);
      const valueOffset = buf.readUInt16LE(at + 20);
      if (valueOffset + valueLength > length) throw fail(`resident value (${valueLength} bytes at ${valueOffset}) runs past the attribute`, at);
      attr.value = Buffer.from(buf.subarray(at + valueOffset, at + valueOffset + valueLength));
      attr.dataSize = attr.initializedSize = attr.allocatedSize = valueLength;
    } else if (nonResident === 1) {
      if (length < 64) throw fail('non-resident attribute header is too short', at);
      attr.startVcn = u64(buf, at + 16, fail);
      const lastVcn = buf.readBigInt64LE(at + 24);
      const runsOffset = buf.readUInt16LE(at + 32);
      attr.compressionUnit = buf.readUInt16LE(at + 34);
      attr.allocatedSize = u64(buf, at + 40, fail);
      attr.dataSize = u64(buf, at + 48, fail);
      attr.initializedSize = u64(buf, at + 56, fail);
      if (runsOffset < 64 || runsOffset > length) throw fail(`run list offset ${runsOffset} is invalid`, at + 32);
      attr.runs = decodeRuns(buf, at + runsOffset, at + length, attr.startVcn, clusters, offset + at + runsOffset);
      const mapped = attr.runs.reduce((n, r) => n + r.count, 0);
      if (lastVcn >= 0n && BigInt(attr.startVcn + mapped) !== lastVcn + 1n && mapped > 0) {
        throw fail(`run list maps VCNs ${attr.startVcn}–${attr.startVcn + mapped - 1}, header says up to ${lastVcn}`, at + 24);
      }
    } else {
      throw fail(`non-resident flag ${nonResident} is invalid`, at + 8);
    }
    attributes.push(attr);
    at += length;
  }
  return {
    number,
    sequence: buf.readUInt16LE(0x10),
    links: buf.readUInt16LE(0x12),
    inUse: (flags & 1) !== 0,
    isDirectory: (flags & 2) !== 0,
    base: Number(buf.readBigUInt64LE(0x20) & 0xffffffffffffn),
    attributes,
  };
}

/** NT time (100 ns ticks since 1601) in milliseconds since 1970. */
export function ntTime(buf: Buffer, at: number): number {
  return Math.floor(Number(buf.readBigUInt64LE(at) / 10000n) - 11644473600000);
}

/** Record number (low 48 bits) of a file reference. */
export function refNumber(buf: Buffer, at: number): number {
  return Number(buf.readBigUInt64LE(at) & 0xffffffffffffn);
}
