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
  direntBlockCsumOk, dxBlockCsumOk, dxCountOffset, extentBlockCsumOk, groupDescCsumOk, hasDirentTail, inodeCsumOk, inodeSeed,
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
    return table;
  }

  async inode(ino: number): Promise<Inode> {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.sb.inodesCount) throw this.error('inode', `inode number ${ino} is out of range (1..${this.sb.inodesCount})`);
    const { inodesPerGroup, inodeSize } = this.sb;
    const g = Math.floor((ino - 1) / inodesPerGroup);
    const byteInTable = ((ino - 1) % inodesPerGroup) * inodeSize;
    const table = await this.inodeTable(g);
    const blockNo = table + Math.floor(byteInTable / this.bs);
    const data = await this.block(blockNo, `inode ${ino}`);
    const at = byteInTable % this.bs;
    const raw = data.subarray(at, at + inodeSize);
    const offset = blockNo * this.bs + at;
    const csumSeed = this.sb.metadataCsum ? inodeSeed(this.sb.csumSeed, ino, raw) : 0;
    if (this.sb.metadataCsum && inodeSize > 128 && 128 + raw.readUInt16LE(0x80) > inodeSize) {
      throw this.error(`inode ${ino}`, `i_extra_isize ${raw.readUInt16LE(0x80)} is too large`, offset + 0x80);
    }
    if (this.sb.metadataCsum && !inodeCsumOk(csumSeed, raw)) throw this.error(`inode ${ino}`, 'checksum (crc32c) does not match: the inode is damaged', offset + 0x7c);
    const mode = raw.readUInt16LE(0);
    if (mode === 0 || !TYPES[mode & 0xf000]) throw this.error(`inode ${ino}`, `mode 0o${mode.toString(8)} is not a valid file type`, offset);
    const extra = inodeSize > 128 ? raw.readUInt16LE(0x80) : 0;
    if (inodeSize > 128 && 128 + extra > inodeSize) throw this.error(`inode ${ino}`, `i_extra_isize ${extra} is too large`, offset + 0x80);
    const time = (base: number, extraAt: number) => {
      let seconds = raw.readInt32LE(base);
      let nanos = 0;
      if (128 + extra >= extraAt + 4) {
        const x = raw.readUInt32LE(extraAt);
        seconds += (x & 3) * 2 ** 32;
        nanos = x >>> 2;
      }
      return seconds * 1000 + Math.floor(nanos / 1e6);
    };
    const size = raw.readUInt32LE(0x4) + raw.readUInt32LE(0x6c) * 2 ** 32;
    if (!Number.isSafeInteger(size)) throw this.error(`inode ${ino}`, 'size is out of range', offset + 0x6c);
    return {
      ino, offset, mode, size, raw, csumSeed,
      uid: raw.readUInt16LE(0x2) | (raw.readUInt16LE(0x78) << 16),
      gid: raw.readUInt16LE(0x18) | (raw.readUInt16LE(0x7a) << 16),
      links: raw.readUInt16LE(0x1a),
      blocks: raw.readUInt32LE(0x1c),
      flags: raw.readUInt32LE(0x20),
      fileAcl: raw.readUInt32LE(0x68),
      atimeMs: time(0x8, 0x8c),
      ctimeMs: time(0xc, 0x84),
      mtimeMs: time(0x10, 0x88),
    };
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
    for await (const entry of this.dirents(dir)) {
      if (entry.name === '.' || entry.name === '..') continue;
      const ino = entry.ino;
      yield { name: entry.name, load: () => this.inode(ino) };
    }
  }

  /** Every live entry of a directory, in on-disk order. */
  private async *dirents(dir: Inode): AsyncIterable<{ name: string; raw: Buffer; ino: number }> {
    if (dir.flags & FLAG_INLINE) {
      const data = this.inlineData(dir);
      // The first 4 bytes hold the parent's inode number; entries follow in i_block and in system.data.
      yield* this.parseBlock(dir, data.subarray(4, Math.min(60, data.length)), dir.offset + 0x2c);
      if (data.length > 60) yield* this.parseBlock(dir, data.subarray(60), dir.offset);
      return;
    }
    const file = new MappedFile(this.volume, this.type, dir.size, await this.runs(dir));
    for (let block = 0; block * this.bs < dir.size; block++) {
      const data = await file.read(block * this.bs, Math.min(this.bs, dir.size - block * this.bs));
      if (this.sb.metadataCsum && data.length === this.bs) this.checkDirBlock(dir, data, block);
      yield* this.parseBlock(dir, data, block * this.bs);
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

  private *parseBlock(dir: Inode, data: Buffer, at: number): Iterable<{ name: string; raw: Buffer; ino: number }> {
    const hasType = (this.sb.incompat & INCOMPAT.filetype) !== 0;
    const where = `directory ${dir.ino} entry`;
    let pos = 0;
    while (pos + 8 <= data.length) {
      const ino = data.readUInt32LE(pos);
      let recLen = data.readUInt16LE(pos + 4);
      if (this.bs >= 65536 && (recLen === 65535 || recLen === 0)) recLen = this.bs;
      const nameLen = hasType ? data[pos + 6] : data.readUInt16LE(pos + 6);
      if (recLen < 8 || recLen % 4 !== 0 || pos + recLen > data.length || 8 + nameLen > recLen) {
        throw this.error(where, `record length ${recLen} (name length ${nameLen}) is invalid`, at + pos + 4);
      }
      if (ino !== 0 && nameLen > 0) {
        if (ino > this.sb.inodesCount) throw this.error(where, `inode number ${ino} is out of range`, at + pos);
        const raw = data.subarray(pos + 8, pos + 8 + nameLen);
        yield { name: raw.toString('utf8'), raw, ino };
      }
      pos += recLen;
    }
    if (pos !== data.length && data.length - pos >= 8) throw this.error(where, 'entries do not fill the block', at + pos);
  }

  protected async lookup(dir: Inode, name: string): Promise<Inode | undefined> {
    // Names are keyed by their raw bytes (latin1 maps bytes 1:1), so names that are not valid UTF-8 stay distinct.
    const ino = await this.dirIndex.lookup(dir.ino, Buffer.from(name, 'utf8').toString('latin1'), async function* (this: ExtFileSystem) {
      for await (const entry of this.dirents(dir)) {
        if (entry.name !== '.' && entry.name !== '..') yield [entry.raw.toString('latin1'), entry.ino] as [string, number];
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

/** Opens the ext2/3/4 file system of a volume. */
export function openExt(volume: Disk): Promise<ExtFileSystem> {
  return ExtFileSystem.open(volume);
}
