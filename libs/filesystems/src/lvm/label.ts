/**
 * LVM2 physical-volume labels: the "LABELONE" label header in one of sectors 0–3, the PV header after it (PV
 * UUID, device size, data and metadata area lists) and each metadata area's header, whose first raw location
 * points at the current VG metadata text inside the area's circular buffer. Every CRC is checked and every
 * offset is checked against the volume before it is used.
 */
import type { Disk } from '@vmkeep/disk';
import { readStructure, u64 } from '../bytes';
import { FileSystemError } from '../errors';
import { MAX_METADATA_BYTES } from './text';

export const SECTOR = 512;
const LABEL_SCAN_SECTORS = 4;
const LABEL_ID = 'LABELONE';
const LABEL_TYPE = 'LVM2 001';
const MDA_MAGIC = ' LVM2 x[5A%r0N*>';
const MDA_HEADER_SIZE = 512;
const RAW_LOCN_IGNORED = 1;
const MAX_AREAS = 8;
/** Initial value of LVM's CRC-32 (reflected 0xEDB88320 polynomial, no final inversion). */
export const LVM_INITIAL_CRC = 0xf597a6cf;

let table: Uint32Array | undefined;

/** LVM's checksum: CRC-32 with the IEEE polynomial, seeded with `initial`, not inverted at the end. */
export function lvmCrc(data: Buffer, initial = LVM_INITIAL_CRC): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = initial >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}

export interface PvLabel {
  /** PV UUID as stored: 32 characters without dashes. */
  uuid: string;
  /** Device size recorded by pvcreate, in bytes. */
  deviceSize: number;
  /** Byte offset of the label on the volume. */
  labelOffset: number;
  /** Metadata areas (absolute byte offset and size on the volume). */
  metadataAreas: { offset: number; size: number }[];
}

export interface PvMetadata {
  text: string;
  /** Byte offset of the text (its first part) on the volume. */
  offset: number;
}

/** Finds the LVM2 label in sectors 0–3 of `volume`; null when there is none, a FileSystemError when it is damaged. */
export async function readPvLabel(volume: Disk): Promise<PvLabel | null> {
  const scan = Math.min(LABEL_SCAN_SECTORS, Math.floor(volume.size / SECTOR));
  if (scan < 1) return null;
  const head = await volume.read(0, scan * SECTOR);
  for (let s = 0; s < scan; s++) {
    const at = s * SECTOR;
    const sector = head.subarray(at, at + SECTOR);
    if (sector.toString('latin1', 0, 8) !== LABEL_ID) continue;
    const fail = (message: string, off = 0) => new FileSystemError('lvm2', 'PV label', message, at + off);
    if (u64(sector, 8, 'lvm2', 'PV label', at) !== s) throw fail(`label says it is in sector ${sector.readBigUInt64LE(8)}, found in sector ${s}`, 8);
    if (lvmCrc(sector.subarray(20)) !== sector.readUInt32LE(16)) throw fail('label CRC mismatch', 16);
    if (sector.toString('latin1', 24, 32) !== LABEL_TYPE) throw fail(`label type ${JSON.stringify(sector.toString('latin1', 24, 32))} is not "${LABEL_TYPE}"`, 24);
    const pvh = sector.readUInt32LE(20);
    if (pvh < 32 || pvh + 40 + 32 > SECTOR) throw fail(`PV header offset ${pvh} is invalid`, 20);
    const uuid = sector.toString('latin1', pvh, pvh + 32);
    if (!/^[A-Za-z0-9!#]{32}$/.test(uuid)) throw fail('PV UUID holds invalid characters', pvh);
    const deviceSize = u64(sector, pvh + 32, 'lvm2', 'PV header', at);
    // Two zero-terminated lists of (offset, size): data areas, then metadata areas.
    let p = pvh + 40;
    const list = (what: string) => {
      const out: { offset: number; size: number }[] = [];
      for (;;) {
        if (p + 16 > SECTOR) throw fail(`${what} list runs past the label sector`, p);
        const offset = u64(sector, p, 'lvm2', 'PV header', at);
        const size = u64(sector, p + 8, 'lvm2', 'PV header', at);
        p += 16;
        if (offset === 0) return out;
        if (out.length >= MAX_AREAS) throw fail(`more than ${MAX_AREAS} ${what}s`, p - 16);
        out.push({ offset, size });
      }
    };
    list('data area');
    const metadataAreas = list('metadata area');
    for (const m of metadataAreas) {
      if (m.size < MDA_HEADER_SIZE * 2 || m.offset + m.size > volume.size) {
        throw fail(`metadata area ${m.offset}+${m.size} is invalid or leaves the ${volume.size}-byte volume`, pvh);
      }
    }
    return { uuid, deviceSize, labelOffset: at, metadataAreas };
  }
  return null;
}

/**
 * Reads the current metadata text of one metadata area (null when the area is marked ignored or holds none).
 * The text may wrap around the end of the circular buffer to just after the area header.
 */
export async function readMetadataArea(volume: Disk, area: { offset: number; size: number }): Promise<PvMetadata | null> {
  const hdr = await readStructure(volume, 'lvm2', 'metadata area header', area.offset, MDA_HEADER_SIZE);
  const fail = (message: string, off = 0) => new FileSystemError('lvm2', 'metadata area header', message, area.offset + off);
  if (lvmCrc(hdr.subarray(4)) !== hdr.readUInt32LE(0)) throw fail('header CRC mismatch');
  if (hdr.toString('latin1', 4, 20) !== MDA_MAGIC) throw fail('bad magic', 4);
  if (hdr.readUInt32LE(20) !== 1) throw fail(`version ${hdr.readUInt32LE(20)} is not 1`, 20);
  if (u64(hdr, 24, 'lvm2', 'metadata area header', area.offset) !== area.offset) throw fail('header start does not match the PV header', 24);
  const size = u64(hdr, 32, 'lvm2', 'metadata area header', area.offset);
  if (size !== area.size) throw fail(`header size ${size} does not match the PV header's ${area.size}`, 32);
  const rOffset = u64(hdr, 40, 'lvm2', 'metadata area header', area.offset);
  const rSize = u64(hdr, 48, 'lvm2', 'metadata area header', area.offset);
  const rCrc = hdr.readUInt32LE(56);
  const rFlags = hdr.readUInt32LE(60);
  if (rOffset === 0 || rFlags & RAW_LOCN_IGNORED) return null;
  const ring = size - MDA_HEADER_SIZE;
  if (rOffset < MDA_HEADER_SIZE || rOffset >= size) throw fail(`metadata offset ${rOffset} lies outside the area`, 40);
  if (rSize === 0 || rSize > ring) throw fail(`metadata size ${rSize} does not fit the ${ring}-byte buffer`, 48);
  if (rSize > MAX_METADATA_BYTES) throw fail(`metadata size ${rSize} exceeds the ${MAX_METADATA_BYTES}-byte limit`, 48);
  const first = Math.min(rSize, size - rOffset);
  const parts = [await readStructure(volume, 'lvm2', 'VG metadata text', area.offset + rOffset, first)];
  if (first < rSize) parts.push(await readStructure(volume, 'lvm2', 'VG metadata text', area.offset + MDA_HEADER_SIZE, rSize - first));
  const bytes = Buffer.concat(parts);
  if (lvmCrc(bytes) !== rCrc) throw new FileSystemError('lvm2', 'VG metadata text', 'metadata CRC mismatch', area.offset + rOffset);
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return { text: bytes.toString('utf8', 0, end), offset: area.offset + rOffset };
}
