/**
 * XFS block maps: the packed 128-bit extent records of an inode fork, held in the inode ("extents" format) or in
 * a B+tree of BMA3 blocks whose root lives in the inode ("btree" format). Every record and tree block is checked
 * (CRC-32C, magic, level, owner, bounds, order) and the walk is bounded, so hostile maps end in a FileSystemError.
 */
import { FileSystemError } from '../errors';
import { crcOk } from './crc';

export const MAX_EXTENTS = 1 << 20;
const BMAP_MAGIC = 0x424d4133; // "BMA3"
const BMAP_HEADER = 72;
const MAX_LEVELS = 9;
const MAX_TREE_BLOCKS = 1 << 16;

/** One extent: `count` blocks of the fork from block `fileBlock`, at linear volume block `diskBlock`. */
export interface Mapping {
  fileBlock: number;
  diskBlock: number;
  count: number;
  /** Preallocated but never written: reads as zeros. */
  unwritten: boolean;
}

/** What the map walk needs from the file system. */
export interface BmapContext {
  blockSize: number;
  /** A file-system block number (AG number and AG block packed) as a linear volume block, or an error. */
  linearBlock(fsb: number, structure: string): number;
  readBlock(linear: number, structure: string): Promise<Buffer>;
  error(structure: string, message: string, offset?: number): FileSystemError;
}

const MASK21 = (1n << 21n) - 1n;

function decode(buf: Buffer, at: number, ctx: BmapContext, structure: string, where: number): Mapping {
  const l0 = buf.readBigUInt64BE(at);
  const l1 = buf.readBigUInt64BE(at + 8);
  const fileBlock = Number((l0 & ((1n << 63n) - 1n)) >> 9n);
  const fsb = Number(((l0 & 0x1ffn) << 43n) | (l1 >> 21n));
  const count = Number(l1 & MASK21);
  if (count === 0) throw ctx.error(structure, 'extent of zero blocks', where);
  if (!Number.isSafeInteger((fileBlock + count) * ctx.blockSize)) throw ctx.error(structure, `extent at file block ${fileBlock} is out of range`, where);
  const diskBlock = ctx.linearBlock(fsb, structure);
  // An extent never crosses an AG boundary, so its last block must map linearly too.
  if (ctx.linearBlock(fsb + count - 1, structure) !== diskBlock + count - 1) throw ctx.error(structure, `extent at block ${fsb} crosses an AG boundary`, where);
  return { fileBlock, diskBlock, count, unwritten: l0 >> 63n === 1n };
}

function push(out: Mapping[], m: Mapping, ctx: BmapContext, structure: string, where: number): void {
  const last = out[out.length - 1];
  if (last && m.fileBlock < last.fileBlock + last.count) throw ctx.error(structure, `extents out of order or overlapping at file block ${m.fileBlock}`, where);
  if (out.length >= MAX_EXTENTS) throw ctx.error(structure, `more than ${MAX_EXTENTS} extents`, where);
  out.push(m);
}

/** The extent list of an "extents"-format fork of `count` records. */
export function readExtentList(fork: Buffer, count: number, ctx: BmapContext, structure: string, forkOffset: number): Mapping[] {
  if (count * 16 > fork.length) throw ctx.error(structure, `${count} extents do not fit the ${fork.length}-byte fork`, forkOffset);
  const out: Mapping[] = [];
  for (let i = 0; i < count; i++) push(out, decode(fork, i * 16, ctx, structure, forkOffset + i * 16), ctx, structure, forkOffset + i * 16);
  return out;
}

/** The extent list of a "btree"-format fork: the root in the inode, then BMA3 blocks down to the leaves. */
export async function readBmbt(fork: Buffer, owner: number, ctx: BmapContext, structure: string, forkOffset: number): Promise<Mapping[]> {
  const level = fork.readUInt16BE(0);
  const numrecs = fork.readUInt16BE(2);
  const maxrecs = Math.floor((fork.length - 4) / 16);
  if (level < 1 || level > MAX_LEVELS) throw ctx.error(structure, `B+tree root level ${level} is invalid`, forkOffset);
  if (numrecs < 1 || numrecs > maxrecs) throw ctx.error(structure, `B+tree root holds ${numrecs} records (at most ${maxrecs})`, forkOffset + 2);
  const out: Mapping[] = [];
  const seen = new Set<number>();
  const ptrAt = (buf: Buffer, base: number, max: number, i: number) => Number(buf.readBigUInt64BE(base + max * 8 + i * 8));
  const visit = async (fsb: number, expectLevel: number): Promise<void> => {
    const linear = ctx.linearBlock(fsb, `${structure} B+tree block`);
    if (seen.has(linear)) throw ctx.error(`${structure} B+tree`, `block ${fsb} is referenced twice (loop)`, linear * ctx.blockSize);
    if (seen.size >= MAX_TREE_BLOCKS) throw ctx.error(`${structure} B+tree`, `more than ${MAX_TREE_BLOCKS} blocks`, linear * ctx.blockSize);
    seen.add(linear);
    const where = linear * ctx.blockSize;
    const block = await ctx.readBlock(linear, `${structure} B+tree block`);
    const fail = (msg: string, at = 0) => ctx.error(`${structure} B+tree block`, msg, where + at);
    if (block.readUInt32BE(0) !== BMAP_MAGIC) throw fail('bad magic (expected BMA3)');
    if (!crcOk(block, 64)) throw fail('CRC-32C mismatch', 64);
    if (block.readUInt16BE(4) !== expectLevel) throw fail(`level ${block.readUInt16BE(4)}, expected ${expectLevel}`, 4);
    if (Number(block.readBigUInt64BE(56)) !== owner) throw fail(`owned by inode ${block.readBigUInt64BE(56)}, not ${owner}`, 56);
    const n = block.readUInt16BE(6);
    const max = Math.floor((block.length - BMAP_HEADER) / 16);
    if (n < 1 || n > max) throw fail(`${n} records (at most ${max})`, 6);
    if (expectLevel === 0) {
      for (let i = 0; i < n; i++) {
        const at = BMAP_HEADER + i * 16;
        push(out, decode(block, at, ctx, `${structure} B+tree leaf`, where + at), ctx, `${structure} B+tree leaf`, where + at);
      }
      return;
    }
    for (let i = 0; i < n; i++) await visit(ptrAt(block, BMAP_HEADER, max, i), expectLevel - 1);
  };
  for (let i = 0; i < numrecs; i++) await visit(ptrAt(fork, 4, maxrecs, i), level - 1);
  return out;
}

/** The mapping holding fork block `fileBlock`, by binary search, or undefined in a hole. */
export function findMapping(map: Mapping[], fileBlock: number): Mapping | undefined {
  let lo = 0;
  let hi = map.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const m = map[mid];
    if (m.fileBlock + m.count <= fileBlock) lo = mid + 1;
    else hi = mid;
  }
  const m = map[lo];
  return m && m.fileBlock <= fileBlock ? m : undefined;
}
