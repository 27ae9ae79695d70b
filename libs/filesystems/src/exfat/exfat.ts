/**
 * exFAT reader: boot sector validation, FAT chains and contiguous (NoFatChain) allocations, directory entry sets
 * (file + stream extension + file names) with their set checksum verified, ValidDataLength (bytes past it read as
 * zeros), timestamps with 10 ms increments and UTC offsets, and the VolumeDirty flag.
 */
import type { Disk } from '@vmkeep/disk';
import { DirectoryIndex, MappedFile, RawEntry, Run, TreeFileSystem } from '../file';
import { FileSystemError } from '../errors';
import type { FileHandle, FileStat } from '../types';

const MAX_DIR_BYTES = 256 * 1024 * 1024;
const DIR_CHUNK = 64 * 1024;
const FAT_PAGE = 65536;
const FAT_PAGES = 64;
const ATTR_READONLY = 0x01;
const ATTR_DIR = 0x10;

export interface ExfatNode {
  name: string;
  attr: number;
  firstCluster: number;
  noFatChain: boolean;
  size: number;
  validSize: number;
  mtimeMs: number;
  atimeMs: number;
  ctimeMs: number;
  /** Byte offset of the entry set, for error messages. */
  at: number;
  /** Set when the entry set is damaged (reported when the entry is used). */
  damage?: string;
}

interface Boot {
  sectorSize: number;
  clusterSize: number;
  fatOffset: number;
  heapOffset: number;
  clusterCount: number;
  rootCluster: number;
  serial: number;
  volumeBytes: number;
  dirty: boolean;
}

function parseBoot(b: Buffer, volumeSize: number): Boot {
  const fail = (field: string, msg: string, at: number) => new FileSystemError('exfat', `boot sector ${field}`, msg, at);
  if (b.toString('latin1', 3, 11) !== 'EXFAT   ') throw fail('name', 'not an exFAT boot sector', 3);
  if (b.readUInt16LE(510) !== 0xaa55) throw fail('signature', 'missing 55 AA', 510);
  if (b.subarray(11, 64).some((x) => x !== 0)) throw fail('MustBeZero', 'bytes 11..63 are not zero', 11);
  const bpsShift = b[108];
  const spcShift = b[109];
  if (bpsShift < 9 || bpsShift > 12) throw fail('BytesPerSectorShift', `${bpsShift} is invalid`, 108);
  if (spcShift > 25 - bpsShift) throw fail('SectorsPerClusterShift', `${spcShift} is invalid`, 109);
  const sectorSize = 2 ** bpsShift;
  const num = (at: number) => {
    const v = b.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail('VolumeLength', 'out of range', at);
    return Number(v);
  };
  const volumeBytes = num(72) * sectorSize;
  if (volumeBytes > volumeSize) throw fail('VolumeLength', `${volumeBytes} bytes do not fit the ${volumeSize}-byte volume`, 72);
  const fats = b[110];
  if (fats !== 1 && fats !== 2) throw fail('NumberOfFats', `${fats} is invalid`, 110);
  const flags = b.readUInt16LE(106);
  const fatOffset = (b.readUInt32LE(80) + (flags & 1 && fats === 2 ? b.readUInt32LE(84) : 0)) * sectorSize;
  const heapOffset = b.readUInt32LE(88) * sectorSize;
  const clusterCount = b.readUInt32LE(92);
  const clusterSize = sectorSize * 2 ** spcShift;
  if (clusterCount === 0 || heapOffset + clusterCount * clusterSize > volumeBytes) throw fail('ClusterCount', `${clusterCount} clusters do not fit the volume`, 92);
  if (fatOffset + (clusterCount + 2) * 4 > heapOffset) throw fail('FatOffset', 'the FAT overlaps the cluster heap', 80);
  const rootCluster = b.readUInt32LE(96);
  if (rootCluster < 2 || rootCluster > clusterCount + 1) throw fail('FirstClusterOfRootDirectory', `${rootCluster} is out of range`, 96);
  return { sectorSize, clusterSize, fatOffset, heapOffset, clusterCount, rootCluster, serial: b.readUInt32LE(100), volumeBytes, dirty: (flags & 2) !== 0 };
}

function timestamp(ts: number, tenMs: number, utcOffset: number): number {
  if (ts === 0) return 0;
  const local = Date.UTC(1980 + (ts >>> 25), Math.max(((ts >>> 21) & 15) - 1, 0), Math.max((ts >>> 16) & 31, 1), (ts >>> 11) & 31, (ts >>> 5) & 63, (ts & 31) * 2);
  const offsetMinutes = utcOffset & 0x80 ? (((utcOffset & 0x7f) ^ 0x40) - 0x40) * 15 : 0;
  return local + Math.min(tenMs, 199) * 10 - offsetMinutes * 60_000;
}

function setChecksum(entries: Buffer): number {
  let sum = 0;
  for (let i = 0; i < entries.length; i++) {
    if (i === 2 || i === 3) continue;
    sum = (((sum & 1) << 15) | (sum >>> 1)) + entries[i];
    sum &= 0xffff;
  }
  return sum;
}

export class ExfatFileSystem extends TreeFileSystem<ExfatNode> {
  readonly type = 'exfat' as const;
  readonly label: string;
  readonly uuid: string;
  readonly size: number;
  readonly dirty: boolean;
  readonly warnings: string[] = [];
  private readonly pages = new Map<number, Buffer>();
  private readonly dirIndex = new DirectoryIndex<ExfatNode>();

  private constructor(
    private readonly volume: Disk,
    private readonly boot: Boot,
    label: string,
  ) {
    super();
    this.label = label;
    this.size = boot.volumeBytes;
    const hex = boot.serial.toString(16).toUpperCase().padStart(8, '0');
    this.uuid = `${hex.slice(0, 4)}-${hex.slice(4)}`;
    this.dirty = boot.dirty;
    if (boot.dirty) this.warnings.push('the volume is marked dirty (not cleanly unmounted)');
  }

  static async open(volume: Disk): Promise<ExfatFileSystem> {
    if (volume.size < 512) throw new FileSystemError('exfat', 'boot sector', 'volume too small', 0);
    const boot = parseBoot(await volume.read(0, 512), volume.size);
    const probe = new ExfatFileSystem(volume, boot, '');
    let label = '';
    for await (const item of probe.scan(await probe.root())) {
      if (item.label !== undefined) {
        label = item.label;
        break;
      }
    }
    return new ExfatFileSystem(volume, boot, label);
  }

  private error(structure: string, message: string, offset?: number): FileSystemError {
    return new FileSystemError('exfat', structure, message, offset);
  }

  private async fatEntry(n: number): Promise<number> {
    const at = n * 4;
    const pageNo = Math.floor(at / FAT_PAGE);
    let page = this.pages.get(pageNo);
    if (!page) {
      const start = this.boot.fatOffset + pageNo * FAT_PAGE;
      page = await this.volume.read(start, Math.min(FAT_PAGE, this.boot.heapOffset - start));
      if (this.pages.size >= FAT_PAGES) this.pages.delete(this.pages.keys().next().value as number);
      this.pages.set(pageNo, page);
    }
    return page.readUInt32LE(at % FAT_PAGE);
  }

  private clusterOffset(c: number): number {
    return this.boot.heapOffset + (c - 2) * this.boot.clusterSize;
  }

  /** Runs of `count` clusters (all of the chain up to `max` when count is undefined). */
  private async runs(node: Pick<ExfatNode, 'firstCluster' | 'noFatChain' | 'name'>, count: number | undefined, max: number): Promise<Run[]> {
    const cs = this.boot.clusterSize;
    const last = this.boot.clusterCount + 1;
    const what = `"${node.name}" cluster chain`;
    if (count === 0) return [];
    if (node.noFatChain) {
      if (count === undefined) throw this.error(what, 'a contiguous allocation needs a length');
      if (node.firstCluster < 2 || node.firstCluster + count - 1 > last) throw this.error(what, `clusters ${node.firstCluster}+${count} are outside the heap`);
      return [{ fileOffset: 0, length: count * cs, diskOffset: this.clusterOffset(node.firstCluster) }];
    }
    const runs: Run[] = [];
    let c = node.firstCluster;
    let n = 0;
    let saved = -1;
    let power = 1;
    let steps = 0;
    for (;;) {
      if (c < 2 || c > last) throw this.error(what, `cluster ${c} is outside the heap`, n ? this.boot.fatOffset + c * 4 : undefined);
      if (c === saved) throw this.error(what, `chain loops back to cluster ${c}`, this.boot.fatOffset + c * 4);
      if (++steps === power) {
        saved = c;
        power *= 2;
        steps = 0;
      }
      if (n >= max) throw this.error(what, `chain is longer than ${max} clusters`, this.boot.fatOffset + c * 4);
      const diskOffset = this.clusterOffset(c);
      const prev = runs[runs.length - 1];
      if (prev && prev.diskOffset + prev.length === diskOffset) prev.length += cs;
      else runs.push({ fileOffset: n * cs, length: cs, diskOffset });
      n++;
      if (count !== undefined && n === count) return runs;
      const next = await this.fatEntry(c);
      if (next === 0xffffffff) {
        if (count !== undefined) throw this.error(what, `chain ends after ${n} of ${count} clusters`, this.boot.fatOffset + c * 4);
        return runs;
      }
      c = next;
    }
  }

  /** The 32-byte entries of a directory, read in chunks. */
  private async *rawEntries(dir: ExfatNode): AsyncIterable<{ e: Buffer; at: number }> {
    const cs = this.boot.clusterSize;
    const isRoot = dir.at < 0;
    const bytes = isRoot ? undefined : dir.size;
    if (bytes !== undefined && bytes > MAX_DIR_BYTES) throw this.error(`directory "${dir.name}"`, `size ${bytes} exceeds ${MAX_DIR_BYTES}`, dir.at);
    const count = bytes === undefined ? undefined : Math.ceil(bytes / cs);
    const runs = await this.runs(dir, count, Math.floor(MAX_DIR_BYTES / cs));
    const length = runs.reduce((s, r) => s + r.length, 0);
    const file = new MappedFile(this.volume, 'exfat', bytes ?? length, runs);
    for (let pos = 0; pos < file.size; pos += DIR_CHUNK) {
      const chunk = await file.read(pos, Math.min(DIR_CHUNK, file.size - pos));
      for (let i = 0; i + 32 <= chunk.length; i += 32) {
        const run = runs.find((r) => r.fileOffset <= pos + i && pos + i < r.fileOffset + r.length)!;
        yield { e: chunk.subarray(i, i + 32), at: run.diskOffset + (pos + i - run.fileOffset) };
      }
    }
  }

  private async *scan(dir: ExfatNode): AsyncIterable<{ node?: ExfatNode; label?: string }> {
    let set: Buffer[] = [];
    let setAt = 0;
    let want = 0;
    const finish = (): ExfatNode => {
      const whole = Buffer.concat(set);
      const file = set[0];
      const stream = set[1];
      const nameLength = stream[3];
      const nameEntries = set.slice(2).filter((n) => n[0] === 0xc1);
      const name = Buffer.concat(nameEntries.map((n) => n.subarray(2, 32))).toString('utf16le').slice(0, nameLength);
      const node: ExfatNode = {
        name, attr: file.readUInt16LE(4), at: setAt,
        firstCluster: stream.readUInt32LE(20), noFatChain: (stream[1] & 2) !== 0,
        size: 0, validSize: 0,
        ctimeMs: timestamp(file.readUInt32LE(8), file[20], file[22]),
        mtimeMs: timestamp(file.readUInt32LE(12), file[21], file[23]),
        atimeMs: timestamp(file.readUInt32LE(16), 0, file[24]),
      };
      const size = stream.readBigUInt64LE(24);
      const valid = stream.readBigUInt64LE(8);
      if (setChecksum(whole) !== file.readUInt16LE(2)) node.damage = 'entry set checksum mismatch';
      else if (size > BigInt(Number.MAX_SAFE_INTEGER) || valid > size) node.damage = `DataLength ${size} / ValidDataLength ${valid} are invalid`;
      else if (nameLength === 0 || nameLength > nameEntries.length * 15) node.damage = `name length ${nameLength} is invalid`;
      else {
        node.size = Number(size);
        node.validSize = Number(valid);
      }
      return node;
    };
    for await (const { e, at } of this.rawEntries(dir)) {
      const type = e[0];
      if (type === 0x00) break;
      if (want > 0) {
        // Inside an entry set: the stream extension, then in-use secondary entries (file names first).
        if ((set.length === 1 && type !== 0xc0) || (set.length > 1 && (type & 0xc0) !== 0xc0)) {
          set = [];
          want = 0;
        } else {
          set.push(Buffer.from(e));
          if (set.length === want) {
            const node = finish();
            set = [];
            want = 0;
            if (node.name !== '' && !node.name.includes('/') && !node.name.includes('\0')) yield { node };
          }
          continue;
        }
      }
      if (type === 0x83) {
        yield { label: e.subarray(2, 2 + Math.min(e[1], 11) * 2).toString('utf16le') };
      } else if (type === 0x85) {
        const secondary = e[1];
        if (secondary >= 2 && secondary <= 18) {
          set = [Buffer.from(e)];
          setAt = at;
          want = secondary + 1;
        }
      }
    }
  }

  protected async root(): Promise<ExfatNode> {
    return { name: '/', attr: ATTR_DIR, firstCluster: this.boot.rootCluster, noFatChain: false, size: 0, validSize: 0, mtimeMs: 0, atimeMs: 0, ctimeMs: 0, at: -1 };
  }

  protected statOf(node: ExfatNode): FileStat {
    const dir = (node.attr & ATTR_DIR) !== 0;
    return {
      type: dir ? 'directory' : 'file', size: dir ? 0 : node.size, mode: (dir ? 0o555 : 0o444) | (node.attr & ATTR_READONLY ? 0 : 0o200),
      uid: 0, gid: 0, mtimeMs: node.mtimeMs, atimeMs: node.atimeMs, ctimeMs: node.ctimeMs, nlink: 1, inode: node.firstCluster,
    };
  }

  private checked(node: ExfatNode): ExfatNode {
    if (node.damage) throw this.error(`directory entry set "${node.name}"`, node.damage, node.at);
    return node;
  }

  protected async *entries(dir: ExfatNode): AsyncIterable<RawEntry<ExfatNode>> {
    for await (const item of this.scan(dir)) {
      const node = item.node;
      if (node) yield { name: node.name, load: async () => this.checked(node) };
    }
  }

  protected async lookup(dir: ExfatNode, name: string): Promise<ExfatNode | undefined> {
    const key = dir.at < 0 ? -1 : dir.at;
    const scan = async function* (this: ExfatFileSystem): AsyncIterable<[string, ExfatNode]> {
      for await (const item of this.scan(dir)) {
        if (!item.node) continue;
        yield [item.node.name, item.node];
        yield [`\0${item.node.name.toUpperCase()}`, item.node];
      }
    }.bind(this);
    const node = (await this.dirIndex.lookup(key, name, scan)) ?? (await this.dirIndex.lookup(key, `\0${name.toUpperCase()}`, scan));
    return node && this.checked(node);
  }

  protected async readlinkOf(): Promise<string> {
    throw this.error('directory entry', 'exFAT has no symbolic links');
  }

  protected async openNode(node: ExfatNode): Promise<FileHandle> {
    const cs = this.boot.clusterSize;
    const runs = await this.runs(node, Math.ceil(node.size / cs), this.boot.clusterCount);
    // Bytes past ValidDataLength read as zeros: clip the runs there.
    const clipped = runs
      .map((r) => ({ ...r, length: Math.min(r.length, node.validSize - r.fileOffset) }))
      .filter((r) => r.length > 0);
    return new MappedFile(this.volume, 'exfat', node.size, clipped);
  }
}

export function openExfat(volume: Disk): Promise<ExfatFileSystem> {
  return ExfatFileSystem.open(volume);
}
