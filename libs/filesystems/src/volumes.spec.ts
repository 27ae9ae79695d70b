import { BufferDisk } from '@vmkeep/disk';
import { crc32 } from './bytes';
import { FileSystemError, PathError } from './errors';
import { splitPath } from './file';
import { listVolumes } from './volumes';

function mbrDisk(entries: { type: number; start: number; sectors: number; status?: number }[], size = 1024 * 512): Buffer {
  const disk = Buffer.alloc(size);
  entries.forEach((e, i) => {
    const at = 446 + i * 16;
    disk[at] = e.status ?? 0;
    disk[at + 4] = e.type;
    disk.writeUInt32LE(e.start, at + 8);
    disk.writeUInt32LE(e.sectors, at + 12);
  });
  disk.writeUInt16LE(0xaa55, 510);
  return disk;
}

describe('crc32', () => {
  test('matches the IEEE check value', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });
});

describe('splitPath', () => {
  test('normalises slashes and dots and refuses ".." and NUL', () => {
    expect(splitPath('/a//b/./c/')).toEqual(['a', 'b', 'c']);
    expect(splitPath('/')).toEqual([]);
    expect(() => splitPath('/a/../b')).toThrow(PathError);
    expect(() => splitPath('/a\0b')).toThrow(/invalid path/);
  });
});

describe('listVolumes', () => {
  test('primary MBR entries become volumes with their type and byte range', async () => {
    const result = await listVolumes(new BufferDisk(mbrDisk([{ type: 0x83, start: 64, sectors: 128 }, { type: 0x07, start: 256, sectors: 256, status: 0x80 }])));
    expect(result.scheme).toBe('mbr');
    expect(result.volumes.map((v) => ({ index: v.index, type: v.type, start: v.start, size: v.size }))).toEqual([
      { index: 1, type: '0x83', start: 64 * 512, size: 128 * 512 },
      { index: 2, type: '0x07', start: 256 * 512, size: 256 * 512 },
    ]);
  });

  test('an MBR entry past the end of the disk is a typed error naming the entry', async () => {
    const err = await listVolumes(new BufferDisk(mbrDisk([{ type: 0x83, start: 64, sectors: 5000 }]))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileSystemError);
    expect(err).toMatchObject({ structure: 'partition entry 1', offset: 446 });
  });

  test('a sector with a bad status byte is not an MBR; an empty disk is one volume', async () => {
    const notMbr = await listVolumes(new BufferDisk(mbrDisk([{ type: 0x83, start: 64, sectors: 128, status: 0x12 }])));
    expect(notMbr.scheme).toBe('none');
    const blank = await listVolumes(new BufferDisk(Buffer.alloc(4096)));
    expect(blank.volumes).toHaveLength(1);
    expect(blank.volumes[0]).toMatchObject({ index: 0, start: 0, size: 4096, type: 'none' });
  });

  test('a protective MBR without any GPT header is a typed error', async () => {
    await expect(listVolumes(new BufferDisk(mbrDisk([{ type: 0xee, start: 1, sectors: 1023 }])))).rejects.toMatchObject({ structure: 'GPT header' });
  });

  test('a volume reads through to its window of the disk and clips extents', async () => {
    const disk = mbrDisk([{ type: 0x83, start: 2, sectors: 2 }], 8 * 512);
    disk.fill(7, 1024, 2048);
    const [volume] = (await listVolumes(new BufferDisk(disk))).volumes;
    expect((await volume.read(0, 1024)).equals(Buffer.alloc(1024, 7))).toBe(true);
    expect(await volume.extents()).toEqual([{ offset: 0, length: 1024 }]);
    await expect(volume.read(1000, 100)).rejects.toThrow(/past the end/);
  });
});

describe('DirectoryIndex', () => {
  test('scans a directory once, keeps within its name budget and evicts the oldest directory', async () => {
    const { DirectoryIndex } = await import('./file');
    const index = new DirectoryIndex<number>(5);
    let scans = 0;
    const dir = (names: string[]) => async function* (): AsyncIterable<[string, number]> {
      scans++;
      for (const [i, n] of names.entries()) yield [n, i];
    };
    const a = dir(['x', 'y', 'z']);
    expect(await index.lookup(1, 'y', a)).toBe(1);
    expect(await index.lookup(1, 'z', a)).toBe(2);
    expect(await index.lookup(1, 'nope', a)).toBeUndefined();
    expect(scans).toBe(1);
    const b = dir(['p', 'q', 'r']);
    expect(await index.lookup(2, 'r', b)).toBe(2);
    expect(await index.lookup(1, 'x', a)).toBe(0);
    expect(scans).toBe(3); // directory 1 was dropped to fit directory 2 in the 5-name budget
    const big = dir(['1', '2', '3', '4', '5', '6']);
    expect(await index.lookup(3, '6', big)).toBe(5);
    expect(await index.lookup(3, '6', big)).toBe(5);
    expect(scans).toBe(5); // too big to cache: scanned each time
  });
});
