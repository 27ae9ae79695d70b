import { MissingFileError, UnsupportedFormatError } from '../errors';
import { BufferSource, type ByteSource } from '../source';
import { openVmdkSource, type VmdkFileResolver } from './open';

const enc = (s: string): Buffer => Buffer.from(s);

/** Files in memory, by name; references resolve by plain name. */
function memory(files: Record<string, Buffer>): VmdkFileResolver {
  return {
    async open(referrer: ByteSource, name: string, structure: string) {
      const data = files[name];
      if (!data) throw new MissingFileError('file does not exist', name, structure);
      return new BufferSource(name, data);
    },
  };
}

const flat = Buffer.alloc(4096);
for (let i = 0; i < flat.length; i++) flat[i] = (i * 7 + 3) & 0xff;

describe('openVmdkSource', () => {
  it('concatenates FLAT, ZERO and offset FLAT extents', async () => {
    const desc = 'version=1\nCID=1\ncreateType="custom"\nRW 2 FLAT "f" 0\nRW 3 ZERO\nRDONLY 4 FLAT "f" 4\n';
    const disk = await openVmdkSource(new BufferSource('d.vmdk', enc(desc)), memory({ f: flat }));
    try {
      expect(disk.size).toBe(9 * 512);
      const all = await disk.read(0, disk.size);
      expect(all.subarray(0, 1024).equals(flat.subarray(0, 1024))).toBe(true);
      expect(all.subarray(1024, 2560).equals(Buffer.alloc(1536))).toBe(true);
      expect(all.subarray(2560).equals(flat.subarray(2048, 4096))).toBe(true);
      expect((await disk.read(1000, 2000)).equals(all.subarray(1000, 3000))).toBe(true);
      expect(await disk.extents()).toEqual([{ offset: 0, length: 1024 }, { offset: 2560, length: 2048 }]);
      expect(disk.info).toMatchObject({ format: 'vmdk', subformat: 'custom', virtualSize: 4608, allocatedBytes: 3072, files: ['d.vmdk', 'f', 'f'] });
      await expect(disk.read(4000, 1000)).rejects.toThrow(/past the end/);
    } finally {
      await disk.close();
    }
  });

  it('refuses references without a resolver, truncated flat files and bare delta extents', async () => {
    const desc = 'version=1\nCID=1\ncreateType="monolithicFlat"\nRW 2 FLAT "f" 0\n';
    await expect(openVmdkSource(new BufferSource('d.vmdk', enc(desc)))).rejects.toBeInstanceOf(MissingFileError);
    const long = 'version=1\nCID=1\ncreateType="monolithicFlat"\nRW 16 FLAT "f" 0\n';
    await expect(openVmdkSource(new BufferSource('d.vmdk', enc(long)), memory({ f: flat }))).rejects.toThrow(/truncated/);
    const cowd = Buffer.alloc(2048);
    cowd.write('COWD', 0, 'latin1');
    await expect(openVmdkSource(new BufferSource('x-delta.vmdk', cowd))).rejects.toBeInstanceOf(UnsupportedFormatError);
  });
});
