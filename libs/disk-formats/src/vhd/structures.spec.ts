import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { parseDynamicHeader, parseFooter, utf16be, vhdChecksum } from './structures';

function footer(type = 3, size = 64 * 1024 * 1024): Buffer {
  const f = Buffer.alloc(512);
  f.write('conectix', 0, 'latin1');
  f.writeUInt32BE(0x00010000, 12);
  f.writeBigUInt64BE(512n, 16);
  f.write('test', 28, 'latin1');
  f.writeBigUInt64BE(BigInt(size), 40);
  f.writeBigUInt64BE(BigInt(size), 48);
  f.writeUInt32BE(type, 60);
  f.fill(0xab, 68, 84);
  f.writeUInt32BE(vhdChecksum(f, 64), 64);
  return f;
}

describe('VHD structures', () => {
  it('parses a footer and checks its checksum, type and size', () => {
    expect(parseFooter(footer(), 'x.vhd', 0)).toMatchObject({ type: 3, currentSize: 64 * 1024 * 1024, creatorApp: 'test', dataOffset: 512, uniqueId: 'ab'.repeat(16) });
    const bad = footer();
    bad[70] ^= 1;
    expect(() => parseFooter(bad, 'x.vhd', 100)).toThrow(/checksum mismatch/);
    expect(() => parseFooter(footer(5), 'x.vhd', 0)).toThrow(UnsupportedFormatError);
    expect(() => parseFooter(footer(2, 513), 'x.vhd', 0)).toThrow(/impossible disk size/);
    try {
      parseFooter(bad, 'x.vhd', 100);
    } catch (err) {
      expect(err).toBeInstanceOf(DiskFormatError);
      expect((err as DiskFormatError).offset).toBe(164);
    }
  });

  it('parses a dynamic header with parent name and locators', () => {
    const h = Buffer.alloc(1024);
    h.write('cxsparse', 0, 'latin1');
    h.writeBigUInt64BE(0xffffffffffffffffn, 8);
    h.writeBigUInt64BE(1536n, 16);
    h.writeUInt32BE(32, 28);
    h.writeUInt32BE(2 * 1024 * 1024, 32);
    Buffer.from('pärent.vhd', 'utf16le').swap16().copy(h, 64);
    h.write('W2ru', 576, 'latin1');
    h.writeUInt32BE(20, 584);
    h.writeBigUInt64BE(4096n, 592);
    h.writeUInt32BE(vhdChecksum(h, 36), 36);
    expect(parseDynamicHeader(h, 'c.vhd', 512)).toMatchObject({
      tableOffset: 1536, maxTableEntries: 32, blockSize: 2 * 1024 * 1024, parentName: 'pärent.vhd',
      locators: [{ platform: 'W2ru', dataLength: 20, dataOffset: 4096 }],
    });
    h.write('cxspars!', 0, 'latin1');
    expect(() => parseDynamicHeader(h, 'c.vhd', 512)).toThrow(/bad cookie/);
    expect(utf16be(Buffer.from([0, 0x41, 0, 0, 0, 0x42]))).toBe('A');
  });
});
