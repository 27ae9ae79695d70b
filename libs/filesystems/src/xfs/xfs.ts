/**
 * XFS v5 reader: inodes (v3, CRC-checked), data forks in local, extent and B+tree format, unwritten extents and
 * holes read as zeros, directories in every form (shortform in the inode; block, leaf, node and B+tree forms are
 * all read through their data blocks, in fork order), local and remote symlinks, and bigtime timestamps.
 * Read-only; every on-disk number is checked before it is used.
 */
import type { Disk } from '@vmkeep/disk';
import { BlockCache, BufferFile, DirectoryIndex, MappedFile, RawEntry, Run, TreeFileSystem } from '../file';
import { FileSystemError } from '../errors';
import type { FileHandle, FileStat, FileType } from '../types';
import { BmapContext, findMapping, Mapping, readBmbt, readExtentList } from './bmap';
import { crcOk } from './crc';
import { checkXfsLog } from './log';
import { INCOMPAT, readXfsSuperblock, XfsSuperblock } from './superblock';

const INODE_MAGIC = 0x494e; // "IN"
const INODE_CORE = 176;
const FORMAT = { dev: 0, local: 1, extents: 2, btree: 3 } as const;
const FLAG2_BIGTIME = 0x8;
const FLAG2_NREXT64 = 0x10;
const DIR_BLOCK_MAGIC = 0x58444233; // "XDB3": single-block directory
const DIR_DATA_MAGIC = 0x58444433; // "XDD3": data block of a leaf/node/B+tree directory
const DIR_DATA_HEADER = 64;
const DIR_LEAF_OFFSET = 32 * 1024 ** 3;
const SYMLINK_MAGIC = 0x58534c4d; // "XSLM"
const SYMLINK_HEADER = 56;
const MAX_SYMLINK = 1024;
const BIGTIME_EPOCH_MS = 2 ** 31 * 1000;

export interface XfsInode {
  ino: number;
  offset: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  format: number;
  extents: number;
  fork: Buffer;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

const TYPES: Record<number, FileType> = {
  0x1000: 'fifo', 0x2000: 'char-device', 0x4000: 'directory', 0x6000: 'block-device', 0x8000: 'file', 0xa000: 'symlink', 0xc000: 'socket',
};

export class XfsFileSystem extends TreeFileSystem<XfsInode> {
  readonly type = 'xfs' as const;
  readonly label: string;
  readonly uuid: string;
  readonly size: number;
  readonly dirty: boolean;
  readonly warnings: string[];
  private readonly cache: BlockCache;
  private readonly dirIndex = new DirectoryIndex<number>();
  private readonly bs: number;
  private readonly ctx: BmapContext;

  private constructor(
    private readonly volume: Disk,
    private readonly sb: XfsSuperblock,
    log: { dirty: boolean; warnings: string[] },
  ) {
    super();
    this.label = sb.label;
    this.uuid = sb.uuid;
    this.bs = sb.blockSize;
    this.size = sb.dataBlocks * sb.blockSize;
    this.dirty = sb.dirty || log.dirty;
    this.warnings = [...sb.warnings, ...log.warnings];
    this.cache = new BlockCache(volume, sb.blockSize);
    this.ctx = {
      blockSize: this.bs,
      linearBlock: (fsb, structure) => this.linearBlock(fsb, structure),
      readBlock: (linear, structure) => this.cache.get(linear, 'xfs', structure),
      error: (structure, message, offset) => this.error(structure, message, offset),
    };
  }

  static async open(volume: Disk): Promise<XfsFileSystem> {
    const sb = await readXfsSuperblock(volume);
    const fs = new XfsFileSystem(volume, sb, await checkXfsLog(volume, sb));
    const root = await fs.inode(sb.rootIno);
    if (fs.statOf(root).type !== 'directory') throw fs.error('root inode', `inode ${sb.rootIno} is not a directory`, root.offset);
    return fs;
  }

  private error(structure: string, message: string, offset?: number): FileSystemError {
    return new FileSystemError('xfs', structure, message, offset);
  }

  /** A file-system block number (AG in the high bits) as a linear block of the volume. */
  private linearBlock(fsb: number, structure: string): number {
    const agno = Math.floor(fsb / 2 ** this.sb.agBlockLog);
    const agbno = fsb % 2 ** this.sb.agBlockLog;
    const linear = agno * this.sb.agBlocks + agbno;
    if (!Number.isSafeInteger(fsb) || agno >= this.sb.agCount || agbno >= this.sb.agBlocks || linear >= this.sb.dataBlocks) {
      throw this.error(structure, `block ${fsb} (AG ${agno}, block ${agbno}) is outside the file system`);
    }
    return linear;
  }

  async inode(ino: number): Promise<XfsInode> {
    const { inodesPerBlockLog, agBlockLog, inodeSize } = this.sb;
    if (!Number.isSafeInteger(ino) || ino < 1) throw this.error('inode', `inode number ${ino} is out of range`);
    const fsb = Math.floor(ino / 2 ** inodesPerBlockLog);
    if (fsb >= 2 ** (agBlockLog + 32)) throw this.error('inode', `inode number ${ino} is out of range`);
    const linear = this.linearBlock(fsb, `inode ${ino}`);
    const block = await this.cache.get(linear, 'xfs', `inode ${ino}`);
    const at = (ino % 2 ** inodesPerBlockLog) * inodeSize;
    const raw = block.subarray(at, at + inodeSize);
    const offset = linear * this.bs + at;
    const fail = (msg: string, field = 0) => this.error(`inode ${ino}`, msg, offset + field);
    if (raw.readUInt16BE(0) !== INODE_MAGIC) throw fail('bad magic (expected "IN"): not an inode in use');
    if (raw[4] !== 3) throw fail(`inode version ${raw[4]} (expected 3)`, 4);
    if (!crcOk(raw, 100)) throw fail('CRC-32C mismatch', 100);
    if (Number(raw.readBigUInt64BE(152)) !== ino) throw fail(`records inode number ${raw.readBigUInt64BE(152)}`, 152);
    const mode = raw.readUInt16BE(2);
    const type = TYPES[mode & 0xf000];
    if (!type) throw fail(`mode 0o${mode.toString(8)} is not a valid file type`, 2);
    const format = raw[5];
    const expected = type === 'directory' || type === 'symlink' ? [FORMAT.local, FORMAT.extents, FORMAT.btree]
      : type === 'file' ? [FORMAT.extents, FORMAT.btree] : [FORMAT.dev];
    if (!(expected as number[]).includes(format)) throw fail(`data fork format ${format} is invalid for a ${type}`, 5);
    const size = raw.readBigInt64BE(56);
    if (size < 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`size ${size} is invalid`, 56);
    const forkOff = raw[82] * 8;
    const literal = inodeSize - INODE_CORE;
    if (forkOff > literal) throw fail(`attribute fork offset ${forkOff} is past the inode`, 82);
    const flags2 = raw.readBigUInt64BE(120);
    const nrext64 = (this.sb.incompat & INCOMPAT.nrext64) !== 0 && (flags2 & BigInt(FLAG2_NREXT64)) !== 0n;
    const extents = nrext64 ? Number(raw.readBigUInt64BE(24)) : raw.readUInt32BE(76);
    const bigtime = (flags2 & BigInt(FLAG2_BIGTIME)) !== 0n;
    const time = (field: number) => {
      if (bigtime) return Number(raw.readBigUInt64BE(field) / 1_000_000n) - BIGTIME_EPOCH_MS;
      return raw.readInt32BE(field) * 1000 + Math.floor(raw.readUInt32BE(field + 4) / 1e6);
    };
    return {
      ino, offset, mode, uid: raw.readUInt32BE(8), gid: raw.readUInt32BE(12), nlink: raw.readUInt32BE(16), size: Number(size),
      format, extents, fork: Buffer.from(raw.subarray(INODE_CORE, INODE_CORE + (forkOff || literal))),
      atimeMs: time(32), mtimeMs: time(40), ctimeMs: time(48),
    };
  }

  /** The block map of an extent- or B+tree-format data fork. */
  private async blockMap(node: XfsInode): Promise<Mapping[]> {
    const structure = `inode ${node.ino} data fork`;
    const forkOffset = node.offset + INODE_CORE;
    if (node.format === FORMAT.extents) return readExtentList(node.fork, node.extents, this.ctx, structure, forkOffset);
    if (node.format === FORMAT.btree) {
      const map = await readBmbt(node.fork, node.ino, this.ctx, structure, forkOffset);
      if (map.length !== node.extents) throw this.error(structure, `B+tree holds ${map.length} extents, the inode says ${node.extents}`, node.offset + 76);
      return map;
    }
    throw this.error(structure, `format ${node.format} has no block map`, node.offset + 5);
  }

  protected async root(): Promise<XfsInode> {
    return this.inode(this.sb.rootIno);
  }

  protected statOf(node: XfsInode): FileStat {
    return {
      type: TYPES[node.mode & 0xf000] ?? 'unknown', size: node.size, mode: node.mode & 0o7777, uid: node.uid, gid: node.gid,
      mtimeMs: node.mtimeMs, atimeMs: node.atimeMs, ctimeMs: node.ctimeMs, nlink: node.nlink, inode: node.ino,
    };
  }

  protected async *entries(dir: XfsInode): AsyncIterable<RawEntry<XfsInode>> {
    for await (const [name, ino] of this.scan(dir)) yield { name, load: () => this.inode(ino) };
  }

  protected async lookup(dir: XfsInode, name: string): Promise<XfsInode | undefined> {
    const ino = await this.dirIndex.lookup(dir.ino, name, () => this.scan(dir));
    return ino === undefined ? undefined : this.inode(ino);
  }

  /** Name and inode number of every entry of a directory except "." and "..". */
  private async *scan(dir: XfsInode): AsyncIterable<[string, number]> {
    if (dir.format === FORMAT.local) {
      yield* this.shortform(dir);
      return;
    }
    const map = await this.blockMap(dir);
    const dirBlocks = this.sb.dirBlockSize / this.bs;
    const leafBlock = DIR_LEAF_OFFSET / this.bs;
    let last = -1;
    for (const m of map) {
      for (let fb = m.fileBlock - (m.fileBlock % dirBlocks); fb < m.fileBlock + m.count && fb < leafBlock; fb += dirBlocks) {
        if (fb <= last) continue;
        last = fb;
        yield* this.dataBlock(dir, map, fb);
      }
    }
  }

  private *shortform(dir: XfsInode): Iterable<[string, number]> {
    const f = dir.fork;
    const where = dir.offset + INODE_CORE;
    const fail = (msg: string, at: number) => this.error(`inode ${dir.ino} short-form directory`, msg, where + at);
    if (dir.size > f.length || dir.size < 6) throw fail(`size ${dir.size} does not fit the ${f.length}-byte fork`, 0);
    const count = f[0];
    const wide = f[1] > 0;
    const inoLen = wide ? 8 : 4;
    const ftype = (this.sb.incompat & INCOMPAT.ftype) !== 0 ? 1 : 0;
    let p = 2 + inoLen;
    for (let i = 0; i < count; i++) {
      if (p + 3 > dir.size) throw fail(`entry ${i} lies past the end`, p);
      const len = f[p];
      const end = p + 3 + len + ftype + inoLen;
      if (len === 0 || end > dir.size) throw fail(`entry ${i} (name length ${len}) lies past the end`, p);
      const name = f.toString('utf8', p + 3, p + 3 + len);
      const at = p + 3 + len + ftype;
      const ino = wide ? Number(f.readBigUInt64BE(at)) : f.readUInt32BE(at);
      p = end;
      yield [name, ino];
    }
  }

  private async readDirBlock(dir: XfsInode, map: Mapping[], fb: number): Promise<{ data: Buffer; offset: number }> {
    const parts: Buffer[] = [];
    let offset = -1;
    for (let i = 0; i < this.sb.dirBlockSize / this.bs; i++) {
      const m = findMapping(map, fb + i);
      if (!m || m.unwritten) throw this.error(`inode ${dir.ino} directory block ${fb}`, `block ${fb + i} of the directory is not mapped`);
      const linear = m.diskBlock + (fb + i - m.fileBlock);
      if (offset < 0) offset = linear * this.bs;
      parts.push(await this.cache.get(linear, 'xfs', `inode ${dir.ino} directory block ${fb}`));
    }
    return { data: parts.length === 1 ? parts[0] : Buffer.concat(parts), offset };
  }

  private async *dataBlock(dir: XfsInode, map: Mapping[], fb: number): AsyncIterable<[string, number]> {
    const { data, offset } = await this.readDirBlock(dir, map, fb);
    const fail = (msg: string, at: number) => this.error(`inode ${dir.ino} directory block ${fb}`, msg, offset + at);
    const magic = data.readUInt32BE(0);
    if (magic !== DIR_BLOCK_MAGIC && magic !== DIR_DATA_MAGIC) throw fail('bad magic (expected XDB3 or XDD3)', 0);
    if (!crcOk(data, 4)) throw fail('CRC-32C mismatch', 4);
    if (Number(data.readBigUInt64BE(40)) !== dir.ino) throw fail(`owned by inode ${data.readBigUInt64BE(40)}`, 40);
    let end = data.length;
    if (magic === DIR_BLOCK_MAGIC) {
      const leafCount = data.readUInt32BE(data.length - 8);
      end = data.length - 8 - leafCount * 8;
      if (end < DIR_DATA_HEADER) throw fail(`${leafCount} hash entries do not fit the block`, data.length - 8);
    }
    const ftype = (this.sb.incompat & INCOMPAT.ftype) !== 0 ? 1 : 0;
    let p = DIR_DATA_HEADER;
    while (p < end) {
      if (p + 8 > end) throw fail('entry lies past the end of the block', p);
      if (data.readUInt16BE(p) === 0xffff) {
        const len = data.readUInt16BE(p + 2);
        if (len < 8 || len % 8 !== 0 || p + len > end) throw fail(`free space of ${len} bytes is invalid`, p);
        p += len;
        continue;
      }
      const nameLen = data[p + 8];
      const len = Math.ceil((8 + 1 + nameLen + ftype + 2) / 8) * 8;
      if (nameLen === 0 || p + len > end) throw fail(`entry (name length ${nameLen}) lies past the end of the block`, p);
      if (data.readUInt16BE(p + len - 2) !== p) throw fail(`entry tag ${data.readUInt16BE(p + len - 2)} does not match its offset ${p}`, p + len - 2);
      const name = data.toString('utf8', p + 9, p + 9 + nameLen);
      const ino = Number(data.readBigUInt64BE(p));
      p += len;
      if (name !== '.' && name !== '..') yield [name, ino];
    }
  }

  protected async readlinkOf(node: XfsInode, path: string): Promise<string> {
    const fail = (msg: string) => this.error(`inode ${node.ino} symlink`, msg, node.offset);
    if (node.size === 0 || node.size > MAX_SYMLINK) throw fail(`target length ${node.size} is invalid (path ${path})`);
    if (node.format === FORMAT.local) {
      if (node.size > node.fork.length) throw fail(`target length ${node.size} exceeds the inode fork`);
      return node.fork.toString('utf8', 0, node.size);
    }
    const map = await this.blockMap(node);
    const parts: Buffer[] = [];
    let got = 0;
    for (let fb = 0; got < node.size; fb++) {
      const m = findMapping(map, fb);
      if (!m || m.unwritten) throw fail(`block ${fb} of the target is not mapped`);
      const linear = m.diskBlock + (fb - m.fileBlock);
      const block = await this.cache.get(linear, 'xfs', `inode ${node.ino} symlink`);
      const where = linear * this.bs;
      if (block.readUInt32BE(0) !== SYMLINK_MAGIC) throw this.error(`inode ${node.ino} symlink block`, 'bad magic (expected XSLM)', where);
      if (!crcOk(block, 12)) throw this.error(`inode ${node.ino} symlink block`, 'CRC-32C mismatch', where + 12);
      if (Number(block.readBigUInt64BE(32)) !== node.ino) throw this.error(`inode ${node.ino} symlink block`, `owned by inode ${block.readBigUInt64BE(32)}`, where + 32);
      const bytes = block.readUInt32BE(8);
      if (block.readUInt32BE(4) !== got || bytes === 0 || SYMLINK_HEADER + bytes > block.length || got + bytes > node.size) {
        throw this.error(`inode ${node.ino} symlink block`, `offset ${block.readUInt32BE(4)} / length ${bytes} are invalid`, where + 4);
      }
      parts.push(block.subarray(SYMLINK_HEADER, SYMLINK_HEADER + bytes));
      got += bytes;
    }
    return Buffer.concat(parts).toString('utf8');
  }

  protected async openNode(node: XfsInode): Promise<FileHandle> {
    if (node.format === FORMAT.local) return new BufferFile(node.fork.subarray(0, Math.min(node.size, node.fork.length)), 'xfs');
    const runs: Run[] = [];
    for (const m of await this.blockMap(node)) {
      if (m.unwritten || m.fileBlock * this.bs >= node.size) continue;
      runs.push({ fileOffset: m.fileBlock * this.bs, length: m.count * this.bs, diskOffset: m.diskBlock * this.bs });
    }
    return new MappedFile(this.volume, 'xfs', node.size, runs);
  }
}

export function openXfs(volume: Disk): Promise<XfsFileSystem> {
  return XfsFileSystem.open(volume);
}
