import { FileSystemError } from '../errors';
import { BmapContext, findMapping, readBmbt, readExtentList } from './bmap';

/** A file system of 2 AGs of 1000 blocks (AG block numbers take 10 bits), 4 KiB blocks, no B+tree blocks. */
const ctx: BmapContext = {
  blockSize: 4096,
  linearBlock: (fsb, structure) => {
    const agno = Math.floor(fsb / 1024);
    const agbno = fsb % 1024;
    if (agno >= 2 || agbno >= 1000) throw new FileSystemError('xfs', structure, `block ${fsb} is outside`);
    return agno * 1000 + agbno;
  },
  readBlock: async () => Buffer.alloc(4096),
  error: (structure, message, offset) => new FileSystemError('xfs', structure, message, offset),
};

/** Packs one 128-bit extent record: flag:1, startoff:54, startblock:52, blockcount:21. */
function record(startoff: number, startblock: number, count: number, unwritten = false): Buffer {
  const b = Buffer.alloc(16);
  const l0 = (unwritten ? 1n << 63n : 0n) | (BigInt(startoff) << 9n) | (BigInt(startblock) >> 43n);
  const l1 = ((BigInt(startblock) & ((1n << 43n) - 1n)) << 21n) | BigInt(count);
  b.writeBigUInt64BE(l0, 0);
  b.writeBigUInt64BE(l1, 8);
  return b;
}

describe('XFS extent records', () => {
  test('decode offsets, AG-packed block numbers, counts and the unwritten flag', () => {
    const fork = Buffer.concat([record(0, 10, 3), record(5, 1024 + 7, 2, true), record(2 ** 40, 999, 1), Buffer.alloc(16)]);
    const map = readExtentList(fork, 3, ctx, 'test fork', 0);
    expect(map).toEqual([
      { fileBlock: 0, diskBlock: 10, count: 3, unwritten: false },
      { fileBlock: 5, diskBlock: 1007, count: 2, unwritten: true },
      { fileBlock: 2 ** 40, diskBlock: 999, count: 1, unwritten: false },
    ]);
    expect(findMapping(map, 1)).toBe(map[0]);
    expect(findMapping(map, 3)).toBeUndefined();
    expect(findMapping(map, 6)).toBe(map[1]);
    expect(findMapping(map, 2 ** 40 + 1)).toBeUndefined();
  });

  test('bad records are typed errors', () => {
    const bad = (fork: Buffer, count: number) => () => readExtentList(fork, count, ctx, 'test fork', 0);
    expect(bad(record(0, 10, 0), 1)).toThrow(/zero blocks/);
    expect(bad(Buffer.concat([record(0, 10, 4), record(3, 20, 1)]), 2)).toThrow(/overlapping/);
    expect(bad(record(0, 995, 10), 1)).toThrow(FileSystemError);
    expect(bad(record(0, 3000, 1), 1)).toThrow(/outside/);
    expect(bad(record(2 ** 53, 1, 1), 1)).toThrow(/out of range/);
    expect(bad(record(0, 1, 1), 2)).toThrow(/do not fit/);
  });

  test('a B+tree root with a bad level, too many records or a block without the BMA3 magic is refused', async () => {
    const root = Buffer.alloc(64);
    root.writeUInt16BE(0, 0);
    root.writeUInt16BE(1, 2);
    await expect(readBmbt(root, 131, ctx, 'test fork', 0)).rejects.toThrow(/level 0/);
    root.writeUInt16BE(1, 0);
    root.writeUInt16BE(4, 2);
    await expect(readBmbt(root, 131, ctx, 'test fork', 0)).rejects.toThrow(/4 records/);
    root.writeUInt16BE(1, 2);
    root.writeBigUInt64BE(12n, 4 + 3 * 8);
    await expect(readBmbt(root, 131, ctx, 'test fork', 0)).rejects.toThrow(/BMA3/);
  });
});
