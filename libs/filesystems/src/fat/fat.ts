/**
 * FAT12/16/32 reader: BPB validation, cluster chains with loop and bound checks, fixed (FAT12/16) and chained
 * (FAT32) root directories, long file names (UTF-16, checksum-verified against the short entry) and short names
 * with the NT lower-case flags. The clean-shutdown bit in FAT[1] and the dirty flag of the boot sector are reported.
 */
import type { Disk } from '@vmkeep/disk';
import { DirectoryIndex, MappedFile, RawEntry, Run, TreeFileSystem } from '../file';
import { FileSystemError } from '../errors';
import type { FileHandle, FileStat } from '../types';

const MAX_DIR_BYTES = 65536 * 32;
const FAT_PAGE = 65536;
const FAT_PAGES = 64;
const ATTR_READONLY = 0x01;
const ATTR_VOLUME = 0x08;
const ATTR_DIR = 0x10;
const ATTR_LFN = 0x0f;

export interface FatNode {
  name: string;
  attr: number;
  cluster: number;
  size: number;
  mtimeMs: number;
  atimeMs: number;
  ctimeMs: number;
  /** The root directory (fixed region on FAT12/16). */
  root?: boolean;
}

interface Bpb {
  type: 'fat12' | 'fat16' | 'fat32';
  bytesPerSector: number;
  clusterSize: number;
  fatOffset: number;
  rootDirOffset: number;
  rootDirBytes: number;
  dataOffset: number;
  clusterCount: number;
  rootCluster: number;
  totalBytes: number;
  serial: number;
  bpbLabel: string;
  dirtyFlag: boolean;
}

/** True when a boot sector carries a plausible FAT BIOS parameter block. */
export function looksLikeFat(boot: Buffer): boolean {
  if (boot.length < 512 || boot.readUInt16LE(510) !== 0xaa55) return false;
  const bps = boot.readUInt16LE(11);
  const spc = boot[13];
  return [512, 1024, 2048, 4096].includes(bps) && spc > 0 && (spc & (spc - 1)) === 0 && boot.readUInt16LE(14) > 0 && boot[16] >= 1
    && (boot.readUInt16LE(19) > 0 || boot.readUInt32LE(32) > 0) && (boot.readUInt16LE(22) > 0 || boot.readUInt32LE(36) > 0);
}

function parseBpb(boot: Buffer, volumeSize: number): Bpb {
  const fail = (field: string, msg: string, at: number) => new FileSystemError('fat', `boot sector ${field}`, msg, at);
  if (boot.readUInt16LE(510) !== 0xaa55) throw fail('signature', 'missing 55 AA', 510);
  const bps = boot.readUInt16LE(11);
  if (![512, 1024, 2048, 4096].includes(bps)) throw fail('bytes per sector', `${bps} is invalid`, 11);
  const spc = boot[13];
  if (spc === 0 || (spc & (spc - 1)) !== 0) throw fail('sectors per cluster', `${spc} is invalid`, 13);
  const reserved = boot.readUInt16LE(14);
  if (reserved === 0) throw fail('reserved sectors', '0 is invalid', 14);
  const fats = boot[16];
  if (fats === 0) throw fail('FAT count', '0 is invalid', 16);
  const rootEntries = boot.readUInt16LE(17);
  const totalSectors = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const fatSectors = boot.readUInt16LE(22) || boot.readUInt32LE(36);
  if (fatSectors === 0) throw fail('FAT size', '0 is invalid', 22);
  const rootDirSectors = Math.ceil((rootEntries * 32) / bps);
  const dataSector = reserved + fats * fatSectors + rootDirSectors;
  if (totalSectors <= dataSector) throw fail('total sectors', `${totalSectors} leave no data area`, 19);
  if (totalSectors * bps > volumeSize) throw fail('total sectors', `${totalSectors} sectors do not fit the ${volumeSize}-byte volume`, 19);
  const clusterCount = Math.floor((totalSectors - dataSector) / spc);
  const type = clusterCount < 4085 ? 'fat12' : clusterCount < 65525 ? 'fat16' : 'fat32';
  const bits = type === 'fat12' ? 12 : type === 'fat16' ? 16 : 32;
  if (fatSectors * bps * 8 < (clusterCount + 2) * bits) throw fail('FAT size', `${fatSectors} sectors cannot map ${clusterCount} clusters`, 22);
  let fatIndex = 0;
  let rootCluster = 0;
  if (type === 'fat32') {
    if (rootEntries !== 0) throw fail('root entries', 'must be 0 on FAT32', 17);
    const extFlags = boot.readUInt16LE(40);
    if (extFlags & 0x80) fatIndex = extFlags & 0x0f;
    if (fatIndex >= fats) throw fail('active FAT', `${fatIndex} is not one of ${fats} FATs`, 40);
    rootCluster = boot.readUInt32LE(44);
    if (rootCluster < 2 || rootCluster > clusterCount + 1) throw fail('root cluster', `${rootCluster} is outside 2..${clusterCount + 1}`, 44);
  } else if (rootEntries === 0) {
    throw fail('root entries', `0 is invalid on ${type.toUpperCase()}`, 17);
  }
  const ext = type === 'fat32' ? 64 : 36;
  const hasExt = boot[ext + 2] === 0x29;
  return {
    type, bytesPerSector: bps, clusterSize: spc * bps,
    fatOffset: (reserved + fatIndex * fatSectors) * bps,
    rootDirOffset: (reserved + fats * fatSectors) * bps,
    rootDirBytes: rootEntries * 32,
    dataOffset: dataSector * bps,
    clusterCount, rootCluster, totalBytes: totalSectors * bps,
    serial: hasExt ? boot.readUInt32LE(ext + 3) : 0,
    bpbLabel: hasExt ? boot.toString('latin1', ext + 7, ext + 18).trimEnd() : '',
    dirtyFlag: (boot[ext + 1] & 1) !== 0,
  };
}

function fatTime(date: number, time: number, tenths = 0): number {
  if (date === 0) return 0;
  const day = date & 31;
  const month = (date >> 5) & 15;
  const year = 1980 + (date >> 9);
  return Date.UTC(year, Math.max(month, 1) - 1, Math.max(day, 1), time >> 11, (time >> 5) & 63, (time & 31) * 2) + tenths * 10;
}

function shortNameChecksum(raw: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + raw[i]) & 0xff;
  return sum;
}

export class FatFileSystem extends TreeFileSystem<FatNode> {
  readonly type: Bpb['type'];
  readonly label: string;
  readonly uuid: string;
  readonly size: number;
  readonly dirty: boolean;
  readonly warnings: string[] = [];
  private readonly pages = new Map<number, Buffer>();
  private readonly dirIndex = new DirectoryIndex<FatNode>();

  private constructor(
    private readonly volume: Disk,
    private readonly bpb: Bpb,
    label: string,
    dirty: boolean,
  ) {
    super();
    this.type = bpb.type;
    this.size = bpb.totalBytes;
    this.label = label;
    const hex = bpb.serial.toString(16).toUpperCase().padStart(8, '0');
    this.uuid = `${hex.slice(0, 4)}-${hex.slice(4)}`;
    this.dirty = dirty;
  }

  static async open(volume: Disk): Promise<FatFileSystem> {
    if (volume.size < 512) throw new FileSystemError('fat', 'boot sector', 'volume too small', 0);
    const bpb = parseBpb(await volume.read(0, 512), volume.size);
    const probe = new FatFileSystem(volume, bpb, '', false);
    const warnings: string[] = [];
    if (bpb.dirtyFlag) warnings.push('the boot sector marks the volume dirty (not cleanly unmounted)');
    const fat1 = await probe.entry(1);
    if ((bpb.type === 'fat16' && !(fat1 & 0x8000)) || (bpb.type === 'fat32' && !(fat1 & 0x08000000))) {
      warnings.push('the clean-shutdown bit in FAT[1] is clear (not cleanly unmounted)');
    }
    let label = bpb.bpbLabel;
    for await (const raw of probe.scan(await probe.root())) {
      if (raw.volumeLabel !== undefined) {
        label = raw.volumeLabel;
        break;
      }
    }
    if (label === 'NO NAME') label = '';
    const fs = new FatFileSystem(volume, bpb, label, warnings.length > 0);
    fs.warnings.push(...warnings);
    return fs;
  }

  private error(structure: string, message: string, offset?: number): FileSystemError {
    return new FileSystemError(this.type, structure, message, offset);
  }

  /** Reads FAT entry `n` through a bounded page cache. */
  private async entry(n: number): Promise<number> {
    const bits = this.bpb.type === 'fat12' ? 12 : this.bpb.type === 'fat16' ? 16 : 32;
    const byte = Math.floor((n * bits) / 8);
    const width = bits === 32 ? 4 : 2;
    const bytes = Buffer.alloc(width);
    for (let i = 0; i < width; i++) {
      const at = byte + i;
      const pageNo = Math.floor(at / FAT_PAGE);
      let page = this.pages.get(pageNo);
      if (!page) {
        const start = this.bpb.fatOffset + pageNo * FAT_PAGE;
        page = await this.volume.read(start, Math.min(FAT_PAGE, this.volume.size - start));
        if (this.pages.size >= FAT_PAGES) this.pages.delete(this.pages.keys().next().value as number);
        this.pages.set(pageNo, page);
      }
      bytes[i] = page[at % FAT_PAGE];
    }
    if (bits === 32) return bytes.readUInt32LE(0) & 0x0fffffff;
    const v = bytes.readUInt16LE(0);
    return bits === 16 ? v : n & 1 ? v >> 4 : v & 0xfff;
  }

  private get endOfChain(): number {
    return this.bpb.type === 'fat12' ? 0xff8 : this.bpb.type === 'fat16' ? 0xfff8 : 0x0ffffff8;
  }

  private clusterOffset(c: number): number {
    return this.bpb.dataOffset + (c - 2) * this.bpb.clusterSize;
  }

  /** The first `count` clusters of the chain starting at `first`, or all of it (up to `max`) when `count` is undefined. */
  private async chain(first: number, what: string, count: number | undefined, max: number): Promise<number[]> {
    const out: number[] = [];
    let c = first;
    const fatAt = (n: number) => this.bpb.fatOffset + Math.floor((n * (this.bpb.type === 'fat12' ? 12 : this.bpb.type === 'fat16' ? 16 : 32)) / 8);
    let prev = -1;
    // Brent's cycle detection: constant memory, and a loop is found within a few times its length.
    let saved = -1;
    let power = 1;
    let steps = 0;
    while (count === undefined || out.length < count) {
      if (c < 2 || c > this.bpb.clusterCount + 1) {
        throw this.error(`${what} cluster chain`, `cluster ${c} is ${c === 0 ? 'free' : 'outside the data area'}`, prev < 0 ? undefined : fatAt(prev));
      }
      if (c === saved) throw this.error(`${what} cluster chain`, `chain loops back to cluster ${c}`, fatAt(prev));
      if (++steps === power) {
        saved = c;
        power *= 2;
        steps = 0;
      }
      if (out.length >= max) throw this.error(`${what} cluster chain`, `chain is longer than ${max} clusters`, fatAt(c));
      out.push(c);
      if (count !== undefined && out.length === count) break;
      const next = await this.entry(c);
      if (next >= this.endOfChain) {
        if (count !== undefined) throw this.error(`${what} cluster chain`, `chain ends after ${out.length} of ${count} clusters`, fatAt(c));
        break;
      }
      prev = c;
      c = next;
    }
    return out;
  }

  private runsOf(clusters: number[]): Run[] {
    const runs: Run[] = [];
    const cs = this.bpb.clusterSize;
    clusters.forEach((c, i) => {
      const last = runs[runs.length - 1];
      const diskOffset = this.clusterOffset(c);
      if (last && last.diskOffset + last.length === diskOffset) last.length += cs;
      else runs.push({ fileOffset: i * cs, length: cs, diskOffset });
    });
    return runs;
  }

  private async directoryBytes(dir: FatNode): Promise<{ data: Buffer; at: (pos: number) => number }> {
    if (dir.root && this.bpb.type !== 'fat32') {
      const data = await this.volume.read(this.bpb.rootDirOffset, this.bpb.rootDirBytes);
      return { data, at: (pos) => this.bpb.rootDirOffset + pos };
    }
    const clusters = await this.chain(dir.cluster, `directory "${dir.name}"`, undefined, Math.max(1, Math.floor(MAX_DIR_BYTES / this.bpb.clusterSize)));
    const runs = this.runsOf(clusters);
    const file = new MappedFile(this.volume, this.type, clusters.length * this.bpb.clusterSize, runs);
    const data = await file.read(0, file.size);
    const cs = this.bpb.clusterSize;
    return { data, at: (pos) => this.clusterOffset(clusters[Math.floor(pos / cs)]) + (pos % cs) };
  }

  /** Every entry of a directory, including the volume label; "." and ".." and deleted entries are skipped. */
  private async *scan(dir: FatNode): AsyncIterable<{ node?: FatNode; volumeLabel?: string }> {
    const { data } = await this.directoryBytes(dir);
    let lfn: string[] = [];
    let lfnSeq = 0;
    let lfnSum = -1;
    for (let pos = 0; pos + 32 <= data.length; pos += 32) {
      const e = data.subarray(pos, pos + 32);
      if (e[0] === 0x00) break;
      if (e[0] === 0xe5) {
        lfn = [];
        lfnSeq = 0;
        continue;
      }
      const attr = e[11];
      if ((attr & 0x3f) === ATTR_LFN) {
        const ord = e[0];
        const seq = ord & 0x1f;
        if (ord & 0x40) {
          lfn = new Array<string>(seq).fill('');
          lfnSum = e[13];
        } else if (seq !== lfnSeq - 1 || e[13] !== lfnSum) {
          lfn = [];
        }
        if (seq < 1 || seq > 20 || lfn.length < seq) {
          lfn = [];
          lfnSeq = 0;
          continue;
        }
        lfnSeq = seq;
        const units = Buffer.concat([e.subarray(1, 11), e.subarray(14, 26), e.subarray(28, 32)]);
        lfn[seq - 1] = units.toString('utf16le');
        continue;
      }
      const longName = lfnSeq === 1 && lfnSum === shortNameChecksum(e) ? lfn.join('') : undefined;
      lfn = [];
      lfnSeq = 0;
      if (attr & ATTR_VOLUME) {
        if (!(attr & ATTR_DIR)) yield { volumeLabel: e.toString('latin1', 0, 11).trimEnd() };
        continue;
      }
      const nameBytes = Buffer.from(e.subarray(0, 11));
      if (nameBytes[0] === 0x05) nameBytes[0] = 0xe5;
      let base = nameBytes.toString('latin1', 0, 8).trimEnd();
      let ext = nameBytes.toString('latin1', 8, 11).trimEnd();
      if (e[12] & 0x08) base = base.toLowerCase();
      if (e[12] & 0x10) ext = ext.toLowerCase();
      if (base === '.' || base === '..') continue;
      let name = ext ? `${base}.${ext}` : base;
      if (longName !== undefined) {
        const end = longName.indexOf('\0');
        name = end >= 0 ? longName.slice(0, end) : longName;
      }
      if (name === '' || name.includes('/')) continue;
      const cluster = (this.bpb.type === 'fat32' ? e.readUInt16LE(20) * 65536 : 0) + e.readUInt16LE(26);
      yield {
        node: {
          name, attr, cluster, size: attr & ATTR_DIR ? 0 : e.readUInt32LE(28),
          mtimeMs: fatTime(e.readUInt16LE(24), e.readUInt16LE(22)),
          atimeMs: fatTime(e.readUInt16LE(18), 0),
          ctimeMs: fatTime(e.readUInt16LE(16), e.readUInt16LE(14), e[13]),
        },
      };
    }
  }

  protected async root(): Promise<FatNode> {
    return { name: '/', attr: ATTR_DIR, cluster: this.bpb.rootCluster, size: 0, mtimeMs: 0, atimeMs: 0, ctimeMs: 0, root: true };
  }

  protected statOf(node: FatNode): FileStat {
    const dir = (node.attr & ATTR_DIR) !== 0;
    const writable = node.attr & ATTR_READONLY ? 0 : 0o200;
    return {
      type: dir ? 'directory' : 'file', size: node.size, mode: (dir ? 0o555 : 0o444) | writable, uid: 0, gid: 0,
      mtimeMs: node.mtimeMs, atimeMs: node.atimeMs, ctimeMs: node.ctimeMs, nlink: 1, inode: node.cluster,
    };
  }

  protected async *entries(dir: FatNode): AsyncIterable<RawEntry<FatNode>> {
    for await (const item of this.scan(dir)) {
      const node = item.node;
      if (node) yield { name: node.name, load: async () => node };
    }
  }

  /** Exact names first; FAT matches names case-insensitively, so a case-folded key ("\0" + upper case) backs them up. */
  protected async lookup(dir: FatNode, name: string): Promise<FatNode | undefined> {
    const key = dir.root ? -1 : dir.cluster;
    const scan = async function* (this: FatFileSystem): AsyncIterable<[string, FatNode]> {
      for await (const item of this.scan(dir)) {
        if (!item.node) continue;
        yield [item.node.name, item.node];
        yield [`\0${item.node.name.toUpperCase()}`, item.node];
      }
    }.bind(this);
    return (await this.dirIndex.lookup(key, name, scan)) ?? this.dirIndex.lookup(key, `\0${name.toUpperCase()}`, scan);
  }

  protected async readlinkOf(): Promise<string> {
    throw this.error('directory entry', 'FAT has no symbolic links');
  }

  protected async openNode(node: FatNode, path: string): Promise<FileHandle> {
    if (node.size === 0) return new MappedFile(this.volume, this.type, 0, []);
    const count = Math.ceil(node.size / this.bpb.clusterSize);
    const clusters = await this.chain(node.cluster, `file "${path}"`, count, this.bpb.clusterCount);
    return new MappedFile(this.volume, this.type, node.size, this.runsOf(clusters));
  }
}

export function openFat(volume: Disk): Promise<FatFileSystem> {
  return FatFileSystem.open(volume);
}
