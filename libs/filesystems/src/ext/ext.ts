/**
 * ext2/3/4 reader: group descriptors (32- and 64-byte, meta_bg), inodes, extent trees of any depth, indirect
 * blocks, linear and htree directories (htree leaves are read in block order, index blocks skipped), inline data,
 * fast and slow symlinks, sparse files and unwritten extents (read as zeros without reading). Read-only, and every
 * on-disk number is checked before it is used.
 */
import type { Disk } from '@vmkeep/disk';
import { BlockCache, BufferFile, DirectoryIndex, MappedFile, RawEntry, Run, TreeFileSystem } from '../file';
import { FileSystemError } from '../errors';
import type { FileHandle, FileStat, FileType } from '../types';
import {
  direntBlockCsumOk, dxBlockCsumOk, dxCountOffset, extentBlockCsumOk, groupDescCsumOk, hasDirentTail, inodeCsumOkAt, inodeSeedAt,
} from './checksum';
import { INCOMPAT, readSuperblock, Superblock } from './superblock';

const ROOT_INO = 2;
const FLAG_EXTENTS = 0x80000;
const FLAG_INLINE = 0x10000000;
const FLAG_INDEX = 0x1000;
const EXTENT_MAGIC = 0xf30a;
const MAX_EXTENT_DEPTH = 5;
const MAX_RUNS = 1 << 20;
const MAX_SYMLINK = 65536;
const XATTR_MAGIC = 0xea020000;

export interface Inode {
  ino: number;
  /** Byte offset of the inode on the volume. */
  offset: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  flags: number;
  /** i_blocks in 512-byte units (low 32 bits). */
  blocks: number;
  fileAcl: number;
  atimeMs: number;
  ctimeMs: number;
  mtimeMs: number;
  raw: Buffer;
  /** Seed of this inode's extent and directory block checksums (metadata_csum; 0 otherwise). */
  csumSeed: number;
}

/** File systems with more in-use inode slots than this are not preloaded (the table takes 44 bytes per slot). */
const PRELOAD_MAX_INODES = 4 * 1024 * 1024;
/** Bytes of folder inodes the preload keeps whole (a copy each); folders beyond are read again when opened. */
const PRELOAD_FOLDER_BYTES = 64 * 1024 * 1024;
/** Bytes of inode table per read while preloading, and reads in flight (decoded meanwhile by the repository's workers). */
const PRELOAD_READ = 1024 * 1024;
const PRELOAD_IN_FLIGHT = 4;

/**
 * What `stat` needs of every in-use inode, loaded in bulk (`preloadInodes`). Group g's inodes sit at slots
 * base[g] … base[g] + used[g] − 1 (base −1: group not loaded); mode 0 = inode not loaded.
 */
interface StatTable {
  base: Float64Array;
  used: Uint32Array;
  mode: Uint16Array;
  links: Uint16Array;
  uid: Int32Array;
  gid: Int32Array;
  size: Float64Array;
  mtimeMs: Float64Array;
  atimeMs: Float64Array;
  ctimeMs: Float64Array;
}

/** Makes the caller's entry of a live directory entry: its name, inode and where the name's bytes are. */
type MakeEntry<T> = (name: string, ino: number, data: Buffer, nameAt: number, nameLength: number) => T;

/** The entries of one directory block, and the damage that ended them early (thrown once they are used). */
interface DirentBlock<T> {
  entries: T[];
  error?: FileSystemError;
}

/** A group descriptor's fields the reader uses. */
interface GroupDesc {
  /** First block of the inode table (checked to lie inside the file system). */
  table: number;
  /** Inodes at the end of the table never used (only meaningful with `Superblock.itableUnused`). */
  itableUnused: number;
}

// Fields of the inode at byte `at` of `buf` (one inode, or an inode table read in bulk).
const inodeExtra = (buf: Buffer, at: number, inodeSize: number) => (inodeSize > 128 ? buf.readUInt16LE(at + 0x80) : 0);
const inodeSizeOf = (buf: Buffer, at: number) => buf.readUInt32LE(at + 0x4) + buf.readUInt32LE(at + 0x6c) * 2 ** 32;
const inodeUid = (buf: Buffer, at: number) => buf.readUInt16LE(at + 0x2) | (buf.readUInt16LE(at + 0x78) << 16);
const inodeGid = (buf: Buffer, at: number) => buf.readUInt16LE(at + 0x18) | (buf.readUInt16LE(at + 0x7a) << 16);

/** A timestamp in ms: seconds at `base`, with epoch bits and nanoseconds at `extraAt` when the extra space holds them. */
function inodeTimeMs(buf: Buffer, at: number, extra: number, base: number, extraAt: number): number {
  let seconds = buf.readInt32LE(at + base);
  let nanos = 0;
  if (128 + extra >= extraAt + 4) {
    const x = buf.readUInt32LE(at + extraAt);
    seconds += (x & 3) * 2 ** 32;
    nanos = x >>> 2;
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

const TYPES: Record<number, FileType> = {
  0x1000: 'fifo', 0x2000: 'char-device', 0x4000: 'directory', 0x6000: 'block-device', 0x8000: 'file', 0xa000: 'symlink', 0xc000: 'socket',
};

export class ExtFileSystem extends TreeFileSystem<Inode> {
  readonly type: Superblock['type'];
  readonly label: string;
  readonly uuid: string;
  readonly size: number;
  readonly dirty: boolean;
  readonly warnings: string[];
  private readonly cache: BlockCache;
  private readonly dirIndex = new DirectoryIndex<number>();
  /** Groups whose descriptor checksum was verified. */
  private readonly checkedGroups = new Set<number>();
  private readonly bs: number;
  /** Set by `preloadInodes`. */
  private stats?: StatTable;
  /**
   * Folder inodes the preload found valid, whole (a copy) with their volume offset: a walk opens every folder, and
   * reading their inodes again would load a chunk of inode table per folder.
   */
  private folders = new Map<number, { raw: Buffer; offset: number }>();

  private constructor(
    private readonly volume: Disk,
    private readonly sb: Superblock,
  ) {
    super();
    this.type = sb.type;
    this.label = sb.label;
    this.uuid = sb.uuid;
    this.size = sb.blocksCount * sb.blockSize;
    this.dirty = sb.dirty;
    this.warnings = sb.warnings;
    this.bs = sb.blockSize;
    this.cache = new BlockCache(volume, sb.blockSize);
  }

  static async open(volume: Disk): Promise<ExtFileSystem> {
    const fs = new ExtFileSystem(volume, await readSuperblock(volume));
    const root = await fs.inode(ROOT_INO);
    if (fs.statOf(root).type !== 'directory') throw fs.error('root inode', 'inode 2 is not a directory', root.offset);
    return fs;
  }

  private error(structure: string, message: string, offset?: number): FileSystemError {
    return new FileSystemError(this.type, structure, message, offset);
  }

  private block(n: number, structure: string): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < this.sb.firstDataBlock || n >= this.sb.blocksCount) {
      throw this.error(structure, `block ${n} is outside the file system (${this.sb.blocksCount} blocks)`);
    }
    return this.cache.get(n, this.type, structure);
  }

  private groupHasSuper(g: number): boolean {
    if (g <= 1 || !this.sb.sparseSuper) return true;
    for (const base of [3, 5, 7]) {
      let p = base;
      while (p < g) p *= base;
      if (p === g) return true;
    }
    return false;
  }

  /** Block number of the inode table of group `g`. */
  private async inodeTable(g: number): Promise<number> {
    return (await this.groupDesc(g)).table;
  }

  /** Group `g`'s descriptor, its checksum verified (metadata_csum) the first time. */
  private async groupDesc(g: number): Promise<GroupDesc> {
    const { descSize, firstDataBlock, blocksPerGroup, firstMetaBg } = this.sb;
    const perBlock = this.bs / descSize;
    const descBlockIndex = Math.floor(g / perBlock);
    let block: number;
    if ((this.sb.incompat & INCOMPAT.metaBg) && descBlockIndex >= firstMetaBg) {
      const first = descBlockIndex * perBlock;
      block = firstDataBlock + first * blocksPerGroup + (this.groupHasSuper(first) ? 1 : 0);
    } else {
      block = firstDataBlock + 1 + descBlockIndex;
    }
    const data = await this.block(block, `group descriptor ${g}`);
    const at = (g % perBlock) * descSize;
    const table = data.readUInt32LE(at + 8) + (descSize >= 64 ? data.readUInt32LE(at + 0x28) * 2 ** 32 : 0);
    const flags = data.readUInt16LE(at + 0x12);
    if (this.sb.metadataCsum && !this.checkedGroups.has(g)) {
      if (!groupDescCsumOk(this.sb.csumSeed, g, data.subarray(at, at + descSize))) {
        throw this.error(`group descriptor ${g}`, 'checksum (crc32c) does not match: the descriptor is damaged', block * this.bs + at + 0x1e);
      }
      this.checkedGroups.add(g);
    }
    const tableBlocks = Math.ceil((this.sb.inodesPerGroup * this.sb.inodeSize) / this.bs);
    const where = block * this.bs + at;
    if (flags & 1) throw this.error(`group descriptor ${g}`, 'inode table is marked uninitialised', where + 0x12);
    if (table < this.sb.firstDataBlock || table + tableBlocks > this.sb.blocksCount) {
      throw this.error(`group descriptor ${g}`, `inode table at block ${table} is outside the file system`, where + 8);
    }
    const itableUnused = data.readUInt16LE(at + 0x1c) + (descSize >= 64 ? data.readUInt16LE(at + 0x32) * 0x10000 : 0);
    return { table, itableUnused };
  }

  /**
   * Reads the inode tables in bulk, group by group in inode order (large sequential reads, several in flight, the
   * never-used tail of each table skipped), and keeps every valid in-use inode's stat fields, so that `readdir`
   * stats entries without a read per inode. Inodes it could not read or parse (a damaged group descriptor, a
   * failed read, a bad checksum) are simply not kept: they are read one by one as before, with the same errors.
   * Only the in-use part of each table is held (44 bytes per inode up to the group's last used one); skipped
   * (returns 0) above 4 Mi such inodes or when the tables could not fit the volume. Returns the number of inodes
   * kept. Only `signal` makes it throw.
   */
  async preloadInodes(opts: { signal?: AbortSignal } = {}): Promise<number> {
    const { inodesCount, inodesPerGroup, inodeSize, groupCount } = this.sb;
    // Real inode tables fit the volume; a damaged superblock claiming more (overlapping tables) is read inode by inode.
    if (inodesCount * inodeSize > this.volume.size) return 0;
    // Slots for the in-use part of each group's table only; pieces of whole inodes, cut at multiples of
    // PRELOAD_READ on the volume (a repository disk then hands out whole decoded chunks without copying them):
    // [first inode, count, byte offset, first slot].
    const base = new Float64Array(groupCount).fill(-1);
    const usedOf = new Uint32Array(groupCount);
    const pieces: [number, number, number, number][] = [];
    let slots = 0;
    for (let g = 0; g < groupCount; g++) {
      let desc: GroupDesc;
      try {
        desc = await this.groupDesc(g);
      } catch {
        continue;
      }
      const first = g * inodesPerGroup + 1;
      let used = Math.min(inodesPerGroup, inodesCount - first + 1);
      if (this.sb.itableUnused) used -= Math.min(used, desc.itableUnused);
      if (used <= 0) continue;
      if (slots + used > PRELOAD_MAX_INODES) return 0;
      base[g] = slots;
      usedOf[g] = used;
      const start = desc.table * this.bs;
      const end = start + used * inodeSize;
      // inodeSize divides both the block size and PRELOAD_READ (powers of two): every cut falls between inodes.
      for (let pos = start; pos < end; ) {
        const next = Math.min(end, (Math.floor(pos / PRELOAD_READ) + 1) * PRELOAD_READ);
        const skip = (pos - start) / inodeSize;
        pieces.push([first + skip, (next - pos) / inodeSize, pos, slots + skip]);
        pos = next;
      }
      slots += used;
    }
    const t: StatTable = {
      base, used: usedOf,
      mode: new Uint16Array(slots), links: new Uint16Array(slots), uid: new Int32Array(slots), gid: new Int32Array(slots),
      size: new Float64Array(slots), mtimeMs: new Float64Array(slots), atimeMs: new Float64Array(slots), ctimeMs: new Float64Array(slots),
    };
    const read = (k: number) => {
      const [, count, offset] = pieces[k];
      const p = this.volume.read(offset, count * inodeSize);
      p.catch(() => undefined);
      return p;
    };
    const inFlight: Promise<Buffer>[] = [];
    const folders = new Map<number, { raw: Buffer; offset: number }>();
    let kept = 0;
    for (let k = 0; k < pieces.length; k++) {
      opts.signal?.throwIfAborted();
      while (inFlight.length < PRELOAD_IN_FLIGHT && k + inFlight.length < pieces.length) inFlight.push(read(k + inFlight.length));
      const [firstIno, count, offset, firstSlot] = pieces[k];
      let data: Buffer;
      try {
        data = await inFlight.shift()!;
      } catch {
        continue;
      }
      for (let j = 0; j < count; j++) {
        const at = j * inodeSize;
        if (data.readUInt16LE(at) === 0) continue; // free
        try {
          this.checkInode(firstIno + j, data, at, offset + at);
        } catch {
          continue;
        }
        const i = firstSlot + j;
        const extra = inodeExtra(data, at, inodeSize);
        if ((data.readUInt16LE(at) & 0xf000) === 0x4000 && (folders.size + 1) * inodeSize <= PRELOAD_FOLDER_BYTES) {
          folders.set(firstIno + j, { raw: Buffer.from(data.subarray(at, at + inodeSize)), offset: offset + at });
        }
        t.mode[i] = data.readUInt16LE(at);
        t.links[i] = data.readUInt16LE(at + 0x1a);
        t.uid[i] = inodeUid(data, at);
        t.gid[i] = inodeGid(data, at);
        t.size[i] = inodeSizeOf(data, at);
        t.atimeMs[i] = inodeTimeMs(data, at, extra, 0x8, 0x8c);
        t.ctimeMs[i] = inodeTimeMs(data, at, extra, 0xc, 0x84);
        t.mtimeMs[i] = inodeTimeMs(data, at, extra, 0x10, 0x88);
        kept++;
      }
    }
    this.stats = t;
    this.folders = folders;
    return kept;
  }

  /** @internal The stat of inode `ino` from the preloaded table, or undefined when it was not preloaded. */
  preloadedStat(ino: number): FileStat | undefined {
    const t = this.stats;
    if (!t) return undefined;
    const g = Math.floor((ino - 1) / this.sb.inodesPerGroup);
    const k = ino - 1 - g * this.sb.inodesPerGroup;
    if (!(g >= 0 && g < t.base.length && t.base[g] >= 0 && k < t.used[g])) return undefined;
    const i = t.base[g] + k;
    const mode = t.mode[i];
    if (mode === 0) return undefined;
    return {
      type: TYPES[mode & 0xf000] ?? 'unknown', size: t.size[i], mode: mode & 0o7777, uid: t.uid[i], gid: t.gid[i],
      mtimeMs: t.mtimeMs[i], atimeMs: t.atimeMs[i], ctimeMs: t.ctimeMs[i], nlink: t.links[i], inode: ino,
    };
  }

  async inode(ino: number): Promise<Inode> {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.sb.inodesCount) throw this.error('inode', `inode number ${ino} is out of range (1..${this.sb.inodesCount})`);
    const folder = this.folders.get(ino);
    if (folder) return this.parseInode(ino, folder.raw, folder.offset);
    const { inodesPerGroup, inodeSize } = this.sb;
    const g = Math.floor((ino - 1) / inodesPerGroup);
    const byteInTable = ((ino - 1) % inodesPerGroup) * inodeSize;
    const table = await this.inodeTable(g);
    const blockNo = table + Math.floor(byteInTable / this.bs);
    const data = await this.block(blockNo, `inode ${ino}`);
    const at = byteInTable % this.bs;
    return this.parseInode(ino, data.subarray(at, at + inodeSize), blockNo * this.bs + at);
  }

  /** Checks and parses inode `ino` from its `raw` bytes, found at byte `offset` of the volume. */
  private parseInode(ino: number, raw: Buffer, offset: number): Inode {
    const csumSeed = this.checkInode(ino, raw, 0, offset);
    const extra = inodeExtra(raw, 0, this.sb.inodeSize);
    return {
      ino, offset, raw, csumSeed,
      mode: raw.readUInt16LE(0),
      size: inodeSizeOf(raw, 0),
      uid: inodeUid(raw, 0),
      gid: inodeGid(raw, 0),
      links: raw.readUInt16LE(0x1a),
      blocks: raw.readUInt32LE(0x1c),
      flags: raw.readUInt32LE(0x20),
      fileAcl: raw.readUInt32LE(0x68),
      atimeMs: inodeTimeMs(raw, 0, extra, 0x8, 0x8c),
      ctimeMs: inodeTimeMs(raw, 0, extra, 0xc, 0x84),
      mtimeMs: inodeTimeMs(raw, 0, extra, 0x10, 0x88),
    };
  }

  /**
   * Checks the inode `ino` at byte `at` of `buf` (at byte `offset` of the volume): extra size, checksum
   * (metadata_csum), file type and size. Returns the seed of its block checksums; throws a FileSystemError.
   */
  private checkInode(ino: number, buf: Buffer, at: number, offset: number): number {
    const { inodeSize, metadataCsum } = this.sb;
    const csumSeed = metadataCsum ? inodeSeedAt(this.sb.csumSeed, ino, buf, at) : 0;
    const extra = inodeExtra(buf, at, inodeSize);
    const extraTooLarge = () => this.error(`inode ${ino}`, `i_extra_isize ${extra} is too large`, offset + 0x80);
    if (metadataCsum && inodeSize > 128 && 128 + extra > inodeSize) throw extraTooLarge();
    if (metadataCsum && !inodeCsumOkAt(csumSeed, buf, at, inodeSize)) throw this.error(`inode ${ino}`, 'checksum (crc32c) does not match: the inode is damaged', offset + 0x7c);
    const mode = buf.readUInt16LE(at);
    if (mode === 0 || !TYPES[mode & 0xf000]) throw this.error(`inode ${ino}`, `mode 0o${mode.toString(8)} is not a valid file type`, offset);
    if (inodeSize > 128 && 128 + extra > inodeSize) throw extraTooLarge();
    if (!Number.isSafeInteger(inodeSizeOf(buf, at))) throw this.error(`inode ${ino}`, 'size is out of range', offset + 0x6c);
    return csumSeed;
  }

  protected root(): Promise<Inode> {
    return this.inode(ROOT_INO);
  }

  protected statOf(node: Inode): FileStat {
    return {
      type: TYPES[node.mode & 0xf000] ?? 'unknown', size: node.size, mode: node.mode & 0o7777, uid: node.uid, gid: node.gid,
      mtimeMs: node.mtimeMs, atimeMs: node.atimeMs, ctimeMs: node.ctimeMs, nlink: node.links, inode: node.ino,
    };
  }

  /** The value of the in-inode "system.data" extended attribute (the tail of inline data), if any. */
  private inlineXattr(node: Inode): Buffer {
    const { raw } = node;
    if (raw.length <= 128) return Buffer.alloc(0);
    const start = 128 + raw.readUInt16LE(0x80);
    if (start + 4 > raw.length || raw.readUInt32LE(start) !== XATTR_MAGIC) return Buffer.alloc(0);
    const base = start + 4;
    let pos = base;
    while (pos + 16 <= raw.length && raw.readUInt32LE(pos) !== 0) {
      const nameLen = raw[pos];
      const valueOffs = raw.readUInt16LE(pos + 2);
      const valueSize = raw.readUInt32LE(pos + 8);
      if (pos + 16 + nameLen > raw.length) throw this.error(`inode ${node.ino} xattr`, 'entry runs past the inode', node.offset + pos);
      if (raw[pos + 1] === 7 && raw.toString('latin1', pos + 16, pos + 16 + nameLen) === 'data') {
        if (base + valueOffs + valueSize > raw.length) throw this.error(`inode ${node.ino} xattr`, 'system.data value runs past the inode', node.offset + pos);
        return raw.subarray(base + valueOffs, base + valueOffs + valueSize);
      }
      pos += (16 + nameLen + 3) & ~3;
    }
    return Buffer.alloc(0);
  }

  private inlineData(node: Inode): Buffer {
    const data = Buffer.concat([node.raw.subarray(0x28, 0x28 + 60), this.inlineXattr(node)]);
    if (node.size > data.length) throw this.error(`inode ${node.ino}`, `inline size ${node.size} exceeds the ${data.length} bytes stored`, node.offset + 4);
    return data.subarray(0, node.size);
  }

  /** The runs of a block-mapped (extent or indirect) inode, limited to its size. */
  private async runs(node: Inode): Promise<Run[]> {
    const nBlocks = Math.ceil(node.size / this.bs);
    const runs: Run[] = [];
    const push = (logical: number, physical: number, count: number, at: number) => {
      if (logical >= nBlocks) return;
      count = Math.min(count, nBlocks - logical);
      if (physical < this.sb.firstDataBlock || physical + count > this.sb.blocksCount) {
        throw this.error(`inode ${node.ino} block map`, `blocks ${physical}+${count} are outside the file system`, at);
      }
      const last = runs[runs.length - 1];
      if (last && last.fileOffset + last.length > logical * this.bs) throw this.error(`inode ${node.ino} block map`, `logical block ${logical} is mapped twice or out of order`, at);
      if (last && last.fileOffset + last.length === logical * this.bs && last.diskOffset + last.length === physical * this.bs) {
        last.length += count * this.bs;
      } else {
        if (runs.length >= MAX_RUNS) throw this.error(`inode ${node.ino} block map`, `more than ${MAX_RUNS} runs`, at);
        runs.push({ fileOffset: logical * this.bs, length: count * this.bs, diskOffset: physical * this.bs });
      }
    };
    if (node.flags & FLAG_EXTENTS) {
      const visited = new Set<number>();
      await this.walkExtents(node, node.raw.subarray(0x28, 0x28 + 60), node.offset + 0x28, -1, visited, push);
    } else {
      await this.walkIndirect(node, nBlocks, push);
    }
    return runs;
  }

  private async walkExtents(
    node: Inode, buf: Buffer, at: number, expectDepth: number, visited: Set<number>,
    push: (logical: number, physical: number, count: number, at: number) => void,
  ): Promise<void> {
    const where = `inode ${node.ino} extent node`;
    if (buf.readUInt16LE(0) !== EXTENT_MAGIC) throw this.error(where, 'bad extent header magic', at);
    const entries = buf.readUInt16LE(2);
    const max = buf.readUInt16LE(4);
    const depth = buf.readUInt16LE(6);
    if (entries > max || 12 + max * 12 > buf.length) throw this.error(where, `${entries}/${max} entries do not fit the node`, at + 2);
    if (depth > MAX_EXTENT_DEPTH || (expectDepth >= 0 && depth !== expectDepth)) throw this.error(where, `depth ${depth} is invalid here`, at + 6);
    // Extent blocks (not the root inside the inode) end in a checksum tail.
    if (this.sb.metadataCsum && expectDepth >= 0 && !extentBlockCsumOk(node.csumSeed, buf)) {
      throw this.error(`inode ${node.ino} extent block`, 'checksum (crc32c) does not match: the extent block is damaged', at);
    }
    let prev = -1;
    for (let i = 0; i < entries; i++) {
      const e = 12 + i * 12;
      const logical = buf.readUInt32LE(e);
      if (i > 0 && logical <= prev) throw this.error(where, 'entries are not in ascending order', at + e);
      prev = logical;
      if (depth === 0) {
        const len = buf.readUInt16LE(e + 4);
        const physical = buf.readUInt16LE(e + 6) * 2 ** 32 + buf.readUInt32LE(e + 8);
        if (len > 32768) continue; // unwritten extent: reads as zeros
        if (len > 0) push(logical, physical, len, at + e);
      } else {
        const child = buf.readUInt16LE(e + 8) * 2 ** 32 + buf.readUInt32LE(e + 4);
        if (visited.has(child)) throw this.error(where, `extent tree loops back to block ${child}`, at + e);
        if (visited.size >= this.sb.blocksCount) throw this.error(where, 'extent tree has more nodes than the file system has blocks', at + e);
        visited.add(child);
        const data = await this.block(child, where);
        await this.walkExtents(node, data, child * this.bs, depth - 1, visited, push);
      }
    }
  }

  private async walkIndirect(node: Inode, nBlocks: number, push: (logical: number, physical: number, count: number, at: number) => void): Promise<void> {
    const perBlock = this.bs / 4;
    const visit = async (pointer: number, level: number, base: number, at: number): Promise<void> => {
      if (pointer === 0 || base >= nBlocks) return;
      if (level === 0) return push(base, pointer, 1, at);
      const data = await this.block(pointer, `inode ${node.ino} indirect block`);
      const span = perBlock ** (level - 1);
      for (let i = 0; i < perBlock && base + i * span < nBlocks; i++) {
        await visit(data.readUInt32LE(i * 4), level - 1, base + i * span, pointer * this.bs + i * 4);
      }
    };
    for (let i = 0; i < 12; i++) await visit(node.raw.readUInt32LE(0x28 + i * 4), 0, i, node.offset + 0x28 + i * 4);
    let base = 12;
    for (let level = 1; level <= 3; level++) {
      await visit(node.raw.readUInt32LE(0x28 + (11 + level) * 4), level, base, node.offset + 0x28 + (11 + level) * 4);
      base += perBlock ** level;
    }
  }

  protected async *entries(dir: Inode): AsyncIterable<RawEntry<Inode>> {
    for await (const batch of this.entryBatches(dir)) yield* batch;
  }

  /** A directory block's entries at a time. */
  protected override async *entryBatches(dir: Inode): AsyncIterable<readonly RawEntry<Inode>[]> {
    for await (const block of this.direntBlocks(dir, (name, ino) => new ExtEntry(this, name, ino))) {
      yield block.entries.filter((entry) => entry.name !== '.' && entry.name !== '..');
      if (block.error) throw block.error;
    }
  }

  /** The live entries of a directory in on-disk order, a block at a time, each made by `make`. */
  private async *direntBlocks<T>(dir: Inode, make: MakeEntry<T>): AsyncIterable<DirentBlock<T>> {
    if (dir.flags & FLAG_INLINE) {
      const data = this.inlineData(dir);
      // The first 4 bytes hold the parent's inode number; entries follow in i_block and in system.data.
      const first = this.parseBlock(dir, data.subarray(4, Math.min(60, data.length)), dir.offset + 0x2c, make);
      yield first;
      if (!first.error && data.length > 60) yield this.parseBlock(dir, data.subarray(60), dir.offset, make);
      return;
    }
    const file = new MappedFile(this.volume, this.type, dir.size, await this.runs(dir));
    for (let block = 0; block * this.bs < dir.size; block++) {
      const data = await file.read(block * this.bs, Math.min(this.bs, dir.size - block * this.bs));
      if (this.sb.metadataCsum && data.length === this.bs) this.checkDirBlock(dir, data, block);
      const parsed = this.parseBlock(dir, data, block * this.bs, make);
      yield parsed;
      if (parsed.error) return;
    }
  }

  /**
   * metadata_csum: a leaf block's dirent tail (its rec_len chain reaches the tail), or else an htree index block's
   * dx_tail, must match.
   */
  private checkDirBlock(dir: Inode, data: Buffer, block: number): void {
    const where = `directory ${dir.ino} block ${block}`;
    if (hasDirentTail(data)) {
      if (!direntBlockCsumOk(dir.csumSeed, data)) throw this.error(where, 'checksum (crc32c) does not match: the directory block is damaged');
      return;
    }
    const countOffset = dir.flags & FLAG_INDEX ? dxCountOffset(data, block === 0, this.bs) : undefined;
    if (countOffset === undefined) throw this.error(where, 'the directory block has no checksum tail: it is damaged');
    if (!dxBlockCsumOk(dir.csumSeed, data, countOffset)) throw this.error(where, 'checksum (crc32c) of the htree index block does not match: it is damaged');
  }

  /** The entries of one directory block; damage ends the list early and is returned as `error`. */
  private parseBlock<T>(dir: Inode, data: Buffer, at: number, make: MakeEntry<T>): DirentBlock<T> {
    const hasType = (this.sb.incompat & INCOMPAT.filetype) !== 0;
    const where = `directory ${dir.ino} entry`;
    const entries: T[] = [];
    let pos = 0;
    while (pos + 8 <= data.length) {
      const ino = data.readUInt32LE(pos);
      let recLen = data.readUInt16LE(pos + 4);
      if (this.bs >= 65536 && (recLen === 65535 || recLen === 0)) recLen = this.bs;
      const nameLen = hasType ? data[pos + 6] : data.readUInt16LE(pos + 6);
      if (recLen < 8 || recLen % 4 !== 0 || pos + recLen > data.length || 8 + nameLen > recLen) {
        return { entries, error: this.error(where, `record length ${recLen} (name length ${nameLen}) is invalid`, at + pos + 4) };
      }
      if (ino !== 0 && nameLen > 0) {
        if (ino > this.sb.inodesCount) return { entries, error: this.error(where, `inode number ${ino} is out of range`, at + pos) };
        entries.push(make(data.toString('utf8', pos + 8, pos + 8 + nameLen), ino, data, pos + 8, nameLen));
      }
      pos += recLen;
    }
    if (pos !== data.length && data.length - pos >= 8) return { entries, error: this.error(where, 'entries do not fill the block', at + pos) };
    return { entries };
  }

  protected async lookup(dir: Inode, name: string): Promise<Inode | undefined> {
    // Names are keyed by their raw bytes (latin1 maps bytes 1:1), so names that are not valid UTF-8 stay distinct.
    const ino = await this.dirIndex.lookup(dir.ino, Buffer.from(name, 'utf8').toString('latin1'), async function* (this: ExtFileSystem) {
      const keyed: MakeEntry<[string, number]> = (_name, ino, data, start, length) => [data.toString('latin1', start, start + length), ino];
      for await (const block of this.direntBlocks(dir, keyed)) {
        for (const entry of block.entries) {
          if (entry[0] !== '.' && entry[0] !== '..') yield entry; // "." and ".." are the same bytes in latin1
        }
        if (block.error) throw block.error;
      }
    }.bind(this));
    return ino === undefined ? undefined : this.inode(ino);
  }

  protected async readlinkOf(node: Inode): Promise<string> {
    if (node.size > MAX_SYMLINK) throw this.error(`inode ${node.ino}`, `symlink target of ${node.size} bytes is too long`, node.offset + 4);
    if (node.flags & FLAG_INLINE) return this.inlineData(node).toString('utf8');
    const eaBlocks = node.fileAcl ? this.bs / 512 : 0;
    if (!(node.flags & FLAG_EXTENTS) && node.size < 60 && node.blocks - eaBlocks <= 0) {
      return node.raw.toString('utf8', 0x28, 0x28 + node.size);
    }
    const file = new MappedFile(this.volume, this.type, node.size, await this.runs(node));
    return (await file.read(0, node.size)).toString('utf8');
  }

  protected async openNode(node: Inode): Promise<FileHandle> {
    if (node.flags & FLAG_INLINE) return new BufferFile(Buffer.from(this.inlineData(node)), this.type);
    return new MappedFile(this.volume, this.type, node.size, await this.runs(node));
  }
}

/** A directory entry of a listing: one object per entry (no closures), its stat from the preloaded table when there. */
class ExtEntry implements RawEntry<Inode> {
  constructor(
    private readonly fs: ExtFileSystem,
    readonly name: string,
    private readonly ino: number,
  ) {}

  load(): Promise<Inode> {
    return this.fs.inode(this.ino);
  }

  stat(): FileStat | undefined {
    return this.fs.preloadedStat(this.ino);
  }
}

/** Opens the ext2/3/4 file system of a volume. */
export function openExt(volume: Disk): Promise<ExtFileSystem> {
  return ExtFileSystem.open(volume);
}
