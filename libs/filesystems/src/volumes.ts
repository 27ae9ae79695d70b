/**
 * Partition tables: GPT (primary header and entry array checked by CRC-32, the backup used when the primary is
 * damaged; 512- and 4096-byte logical sectors) and MBR (primary entries plus the extended/logical chain, with
 * loop and bound checks). A disk without a table is one volume.
 */
import { checkRange, Disk, Extent } from '@vmkeep/disk';
import { crc32, mixedEndianGuid, readStructure } from './bytes';
import { FileSystemError } from './errors';
import type { ListVolumesResult, PartitionScheme, Volume } from './types';

const GPT_SIGNATURE = 'EFI PART';
const MAX_GPT_ENTRY_BYTES = 4 * 1024 * 1024;
const MAX_LOGICAL_PARTITIONS = 256;
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);

/** A byte window of a disk, exposed as a Disk of its own. Closing it does not close the disk. */
export class VolumeDisk implements Volume {
  constructor(
    private readonly disk: Disk,
    readonly start: number,
    readonly size: number,
    readonly index: number,
    readonly scheme: PartitionScheme,
    readonly type: string,
    readonly name = '',
    readonly guid = '',
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, `volume ${this.index}`, offset, length);
    return this.disk.read(this.start + offset, length);
  }

  async extents(): Promise<Extent[]> {
    const end = this.start + this.size;
    const out: Extent[] = [];
    for (const e of await this.disk.extents()) {
      const from = Math.max(e.offset, this.start);
      const to = Math.min(e.offset + e.length, end);
      if (to > from) out.push({ offset: from - this.start, length: to - from });
    }
    return out;
  }

  async close(): Promise<void> {}
}

/** Lists the volumes of a disk: the partitions of its GPT or MBR, or the whole disk when it has no table. */
export async function listVolumes(disk: Disk): Promise<ListVolumesResult> {
  if (disk.size < 512) return wholeDisk(disk, []);
  const mbr = await disk.read(0, 512);
  const protective = mbr.readUInt16LE(510) === 0xaa55 && [0, 1, 2, 3].some((i) => mbr[446 + i * 16 + 4] === 0xee);
  for (const sectorSize of [512, 4096]) {
    if (disk.size < sectorSize * 2) continue;
    const sig = await disk.read(sectorSize, 8);
    if (sig.toString('latin1') === GPT_SIGNATURE) return readGpt(disk, sectorSize);
  }
  if (protective) {
    // The primary header is gone: look for a backup header in the last sector.
    for (const sectorSize of [512, 4096]) {
      const last = Math.floor(disk.size / sectorSize) - 1;
      if (last < 2) continue;
      const sig = await disk.read(last * sectorSize, 8);
      if (sig.toString('latin1') === GPT_SIGNATURE) return readGpt(disk, sectorSize);
    }
    throw new FileSystemError('gpt', 'GPT header', 'protective MBR present but no GPT header (primary or backup) found', 512);
  }
  if (mbr.readUInt16LE(510) === 0xaa55 && !looksLikeBootSector(mbr) && isMbr(mbr)) return readMbr(disk, mbr);
  return wholeDisk(disk, []);
}

function wholeDisk(disk: Disk, warnings: string[]): ListVolumesResult {
  return { scheme: 'none', sectorSize: 512, volumes: [new VolumeDisk(disk, 0, disk.size, 0, 'none', 'none')], warnings };
}

/** A FAT/NTFS/exFAT/BitLocker boot sector also ends in 55 AA: it is a file system, not a partition table. */
function looksLikeBootSector(sector: Buffer): boolean {
  const oem = sector.toString('latin1', 3, 11);
  if (oem === 'NTFS    ' || oem === 'EXFAT   ' || oem === '-FVE-FS-' || sector.toString('latin1', 3, 7) === 'ReFS') return true;
  const jump = sector[0] === 0xeb ? sector[2] === 0x90 : sector[0] === 0xe9;
  if (!jump) return false;
  const bps = sector.readUInt16LE(11);
  const spc = sector[13];
  return [512, 1024, 2048, 4096].includes(bps) && spc > 0 && (spc & (spc - 1)) === 0 && sector.readUInt16LE(14) > 0 && sector[16] >= 1 && sector[16] <= 4;
}

function isMbr(sector: Buffer): boolean {
  let used = 0;
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    if (sector[e] !== 0 && sector[e] !== 0x80) return false;
    if (sector[e + 4] !== 0) used++;
  }
  return used > 0;
}

interface MbrEntry {
  type: number;
  start: number;
  sectors: number;
}

function mbrEntry(sector: Buffer, i: number): MbrEntry {
  const e = 446 + i * 16;
  return { type: sector[e + 4], start: sector.readUInt32LE(e + 8), sectors: sector.readUInt32LE(e + 12) };
}

async function readMbr(disk: Disk, mbr: Buffer): Promise<ListVolumesResult> {
  const sectors = Math.floor(disk.size / 512);
  const volumes: Volume[] = [];
  const warnings: string[] = [];
  const typeText = (t: number) => `0x${t.toString(16).padStart(2, '0')}`;
  const check = (entry: MbrEntry, what: string, at: number, lo: number, hi: number) => {
    if (entry.sectors === 0 || entry.start < lo || entry.start + entry.sectors > hi) {
      throw new FileSystemError('mbr', what, `sectors ${entry.start}+${entry.sectors} fall outside ${lo}..${hi}`, at);
    }
  };
  let logicalIndex = 5;
  for (let i = 0; i < 4; i++) {
    const entry = mbrEntry(mbr, i);
    if (entry.type === 0) continue;
    const at = 446 + i * 16;
    check(entry, `partition entry ${i + 1}`, at, 1, sectors);
    if (!EXTENDED_TYPES.has(entry.type)) {
      volumes.push(new VolumeDisk(disk, entry.start * 512, entry.sectors * 512, i + 1, 'mbr', typeText(entry.type)));
      continue;
    }
    // The extended partition: a chain of EBRs, each holding one logical partition and the link to the next.
    const extStart = entry.start;
    const extEnd = entry.start + entry.sectors;
    const seen = new Set<number>();
    let ebr = extStart;
    for (;;) {
      if (seen.has(ebr)) throw new FileSystemError('mbr', 'extended boot record', 'the EBR chain loops', ebr * 512);
      if (seen.size >= MAX_LOGICAL_PARTITIONS) throw new FileSystemError('mbr', 'extended boot record', `more than ${MAX_LOGICAL_PARTITIONS} logical partitions`, ebr * 512);
      seen.add(ebr);
      const sector = await readStructure(disk, 'mbr', 'extended boot record', ebr * 512, 512);
      if (sector.readUInt16LE(510) !== 0xaa55) throw new FileSystemError('mbr', 'extended boot record', 'missing 55 AA signature', ebr * 512);
      const logical = mbrEntry(sector, 0);
      if (logical.type !== 0) {
        const abs = { ...logical, start: ebr + logical.start };
        check(abs, `logical partition ${logicalIndex}`, ebr * 512 + 446, ebr + 1, extEnd);
        volumes.push(new VolumeDisk(disk, abs.start * 512, abs.sectors * 512, logicalIndex++, 'mbr', typeText(logical.type)));
      }
      const link = mbrEntry(sector, 1);
      if (link.type === 0 || link.start === 0) break;
      if (!EXTENDED_TYPES.has(link.type)) warnings.push(`EBR at sector ${ebr}: link entry has type ${typeText(link.type)}`);
      const next = extStart + link.start;
      if (next <= extStart || next >= extEnd) throw new FileSystemError('mbr', 'extended boot record', `link to sector ${next} leaves the extended partition`, ebr * 512 + 462);
      ebr = next;
    }
  }
  volumes.sort((a, b) => a.index - b.index);
  return { scheme: 'mbr', sectorSize: 512, volumes, warnings };
}

interface GptHeader {
  alternateLba: number;
  firstUsable: number;
  lastUsable: number;
  entryLba: number;
  count: number;
  entrySize: number;
  entries: Buffer;
}

async function readGptHeader(disk: Disk, sectorSize: number, lba: number): Promise<GptHeader> {
  const at = lba * sectorSize;
  const fail = (msg: string, off = 0) => new FileSystemError('gpt', 'GPT header', msg, at + off);
  const h = await readStructure(disk, 'gpt', 'GPT header', at, sectorSize);
  if (h.toString('latin1', 0, 8) !== GPT_SIGNATURE) throw fail('missing "EFI PART" signature');
  const headerSize = h.readUInt32LE(12);
  if (headerSize < 92 || headerSize > sectorSize) throw fail(`header size ${headerSize} is invalid`, 12);
  const copy = Buffer.from(h.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== h.readUInt32LE(16)) throw fail('header CRC-32 mismatch', 16);
  const num = (off: number) => {
    const v = h.readBigUInt64LE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail('LBA out of range', off);
    return Number(v);
  };
  if (num(24) !== lba) throw fail(`header says it is at LBA ${num(24)}`, 24);
  const lastLba = Math.floor(disk.size / sectorSize) - 1;
  const header: GptHeader = {
    alternateLba: num(32), firstUsable: num(40), lastUsable: num(48), entryLba: num(72),
    count: h.readUInt32LE(80), entrySize: h.readUInt32LE(84), entries: Buffer.alloc(0),
  };
  if (header.firstUsable > header.lastUsable || header.lastUsable > lastLba) throw fail(`usable range ${header.firstUsable}..${header.lastUsable} is outside the disk`, 40);
  if (header.entrySize < 128 || header.entrySize % 8 !== 0) throw fail(`entry size ${header.entrySize} is invalid`, 84);
  const bytes = header.count * header.entrySize;
  if (bytes > MAX_GPT_ENTRY_BYTES) throw fail(`entry array of ${bytes} bytes is too large`, 80);
  if (header.entryLba < 1 || (header.entryLba * sectorSize + bytes) > disk.size) throw fail(`entry array at LBA ${header.entryLba} is outside the disk`, 72);
  header.entries = await readStructure(disk, 'gpt', 'GPT entry array', header.entryLba * sectorSize, bytes);
  if (crc32(header.entries) !== h.readUInt32LE(88)) throw new FileSystemError('gpt', 'GPT entry array', 'entry array CRC-32 mismatch', header.entryLba * sectorSize);
  return header;
}

async function readGpt(disk: Disk, sectorSize: number): Promise<ListVolumesResult> {
  const warnings: string[] = [];
  const lastLba = Math.floor(disk.size / sectorSize) - 1;
  let header: GptHeader;
  try {
    header = await readGptHeader(disk, sectorSize, 1);
    try {
      await readGptHeader(disk, sectorSize, header.alternateLba);
    } catch (e) {
      warnings.push(`backup GPT damaged: ${(e as Error).message}`);
    }
  } catch (primaryError) {
    if (!(primaryError instanceof FileSystemError)) throw primaryError;
    try {
      header = await readGptHeader(disk, sectorSize, lastLba);
    } catch (backupError) {
      throw new FileSystemError('gpt', 'GPT header', `primary and backup GPT both damaged: ${primaryError.message}; ${(backupError as Error).message}`, sectorSize);
    }
    warnings.push(`primary GPT damaged (${primaryError.message}); the backup GPT was used`);
  }
  const volumes: Volume[] = [];
  for (let i = 0; i < header.count; i++) {
    const e = i * header.entrySize;
    const entries = header.entries;
    if (entries.subarray(e, e + 16).every((b) => b === 0)) continue;
    const first = entries.readBigUInt64LE(e + 32);
    const last = entries.readBigUInt64LE(e + 40);
    if (first > last || first < BigInt(header.firstUsable) || last > BigInt(header.lastUsable)) {
      throw new FileSystemError('gpt', `GPT entry ${i + 1}`, `LBAs ${first}..${last} fall outside the usable range ${header.firstUsable}..${header.lastUsable}`, header.entryLba * sectorSize + e + 32);
    }
    const nameRaw = entries.subarray(e + 56, e + Math.min(header.entrySize, 128));
    let name = nameRaw.toString('utf16le');
    const nul = name.indexOf('\0');
    if (nul >= 0) name = name.slice(0, nul);
    volumes.push(new VolumeDisk(
      disk, Number(first) * sectorSize, (Number(last) - Number(first) + 1) * sectorSize, i + 1, 'gpt',
      mixedEndianGuid(entries, e), name, mixedEndianGuid(entries, e + 16),
    ));
  }
  return { scheme: 'gpt', sectorSize, volumes, warnings };
}
