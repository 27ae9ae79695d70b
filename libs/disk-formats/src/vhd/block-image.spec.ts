import { BufferDisk } from '@vmkeep/disk';
import { BufferSource } from '../source';
import type { ImageDisk, ImageInfo } from '../types';
import { BlockImage, BlockMap, BlockState, bufferBitmap, mergeExtents, PagedTable } from './block-image';

const info = (): ImageInfo => ({ format: 't', subformat: 't', virtualSize: 0, files: [], parents: [], metadata: {}, warnings: [] });

function parentDisk(data: Buffer, extents = [{ offset: 0, length: data.length }]): ImageDisk {
  const disk = new BufferDisk(data);
  return Object.assign(disk, { info: info(), extents: async () => extents });
}

/** 4 blocks of 8 sectors (16 bytes each): data, zero, absent, partial (even sectors mine). */
function fixture(withParent: boolean) {
  const file = Buffer.alloc(1024);
  for (let i = 0; i < file.length; i++) file[i] = (i % 251) + 1;
  const states: BlockState[] = [
    { kind: 'data', fileOffset: 0 },
    { kind: 'zero' },
    { kind: 'absent' },
    { kind: 'partial', fileOffset: 512, bitmap: bufferBitmap(Buffer.from([0b01010101]), false) },
  ];
  const map: BlockMap = { blockSize: 128, sectorSize: 16, state: async (b) => states[b] };
  const parentData = Buffer.alloc(512, 0xee);
  const parent = withParent ? parentDisk(parentData, [{ offset: 256, length: 64 }, { offset: 400, length: 16 }]) : undefined;
  return { disk: new BlockImage(512, map, new BufferSource('f', file), parent, info()), file, parentData };
}

describe('BlockImage', () => {
  it('reads data, zero, parent and per-sector partial blocks', async () => {
    const { disk, file, parentData } = fixture(true);
    const got = await disk.read(0, 512);
    expect(got.subarray(0, 128).equals(file.subarray(0, 128))).toBe(true);
    expect(got.subarray(128, 256).every((b) => b === 0)).toBe(true);
    expect(got.subarray(256, 384).equals(parentData.subarray(256, 384))).toBe(true);
    for (let s = 0; s < 8; s++) {
      const want = s % 2 === 0 ? file.subarray(512 + s * 16, 528 + s * 16) : parentData.subarray(384 + s * 16, 400 + s * 16);
      expect(got.subarray(384 + s * 16, 400 + s * 16).equals(want)).toBe(true);
    }
    expect((await disk.read(390, 20)).equals(got.subarray(390, 410))).toBe(true);
    await expect(disk.read(500, 13)).rejects.toThrow(/past the end/);
  });

  it('lists own blocks plus the parent extents that show through', async () => {
    expect(await fixture(true).disk.extents()).toEqual([
      { offset: 0, length: 128 },
      { offset: 256, length: 64 },
      { offset: 384, length: 128 },
    ]);
    const alone = fixture(false);
    expect(await alone.disk.extents()).toEqual([{ offset: 0, length: 128 }, { offset: 384, length: 128 }]);
    expect((await alone.disk.read(256, 128)).every((b) => b === 0)).toBe(true);
  });

  it('bitmaps number sectors from the most or least significant bit', () => {
    const msb = bufferBitmap(Buffer.from([0x80, 0x01]), true);
    const lsb = bufferBitmap(Buffer.from([0x80, 0x01]), false);
    expect([0, 7, 8, 15].map((s) => msb.has(s))).toEqual([true, false, false, true]);
    expect([0, 7, 8, 15].map((s) => lsb.has(s))).toEqual([false, true, true, false]);
    expect(msb.has(1000)).toBe(false);
  });

  it('merges touching extents and pages big tables lazily', async () => {
    expect(mergeExtents([{ offset: 0, length: 4 }, { offset: 4, length: 4 }, { offset: 10, length: 1 }])).toEqual([
      { offset: 0, length: 8 },
      { offset: 10, length: 1 },
    ]);
    const data = Buffer.alloc(4 * 10000);
    for (let i = 0; i < 10000; i++) data.writeUInt32BE(i * 3, i * 4);
    const reads: number[] = [];
    const src = new BufferSource('t', data);
    const spy = { ...src, name: 't', size: data.length, read: (o: number, l: number, s: string) => (reads.push(l), src.read(o, l, s)), close: async () => {} };
    const table = new PagedTable(spy, 0, 4, 10000, 'T');
    const { page, at } = await table.entry(9999);
    expect(page.readUInt32BE(at)).toBe(29997);
    await table.entry(9000);
    expect(reads).toEqual([(10000 - 8192) * 4]);
    await expect(table.entry(10000)).rejects.toThrow(/outside the table/);
  });
});
