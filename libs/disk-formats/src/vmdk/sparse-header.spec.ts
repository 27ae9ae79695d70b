import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { directoryEntries, GD_AT_END, parseSparseHeader } from './sparse-header';

function header(edit: (b: Buffer) => void = () => undefined): Buffer {
  const b = Buffer.alloc(512);
  b.write('KDMV', 0, 'latin1');
  b.writeUInt32LE(1, 4);
  b.writeUInt32LE(0x3, 8);
  b.writeBigUInt64LE(20480n, 12);
  b.writeBigUInt64LE(128n, 20);
  b.writeBigUInt64LE(1n, 28);
  b.writeBigUInt64LE(20n, 36);
  b.writeUInt32LE(512, 44);
  b.writeBigUInt64LE(21n, 48);
  b.writeBigUInt64LE(30n, 56);
  b.writeBigUInt64LE(128n, 64);
  Buffer.from([0x0a, 0x20, 0x0d, 0x0a]).copy(b, 73);
  edit(b);
  return b;
}

function fails(b: Buffer, size = 1 << 20): DiskFormatError {
  try {
    parseSparseHeader(b, 'f.vmdk', size, 0);
  } catch (e) {
    return e as DiskFormatError;
  }
  throw new Error('expected an error');
}

describe('parseSparseHeader', () => {
  it('decodes a valid header', () => {
    const h = parseSparseHeader(header(), 'f.vmdk', 1 << 20);
    expect(h).toMatchObject({ version: 1, flags: 3, capacity: 20480, grainSectors: 128, descriptorOffset: 1, descriptorSectors: 20, rgdOffset: 21, gdOffset: 30, overHead: 128 });
    expect(directoryEntries(h)).toBe(1);
  });

  it('keeps GD_AT_END', () => {
    const h = parseSparseHeader(header((b) => b.writeBigUInt64LE(0xffffffffffffffffn, 56)), 'f.vmdk', 1 << 20);
    expect(h.gdOffset).toBe(GD_AT_END);
  });

  it.each([
    ['bad magic', (b: Buffer) => b.write('KDMX', 0, 'latin1'), 0, /magic/],
    ['grain 0', (b: Buffer) => b.writeBigUInt64LE(0n, 20), 20, /grainSize is 0/],
    ['grain not a power of two', (b: Buffer) => b.writeBigUInt64LE(96n, 20), 20, /power of two/],
    ['grain too large', (b: Buffer) => b.writeBigUInt64LE(1n << 40n, 20), 20, /too large/],
    ['capacity absurd', (b: Buffer) => b.writeBigUInt64LE(1n << 45n, 12), 12, /absurd/],
    ['capacity beyond 2^53', (b: Buffer) => b.writeBigUInt64LE(1n << 60n, 12), 12, /absurd/],
    ['numGTEsPerGT', (b: Buffer) => b.writeUInt32LE(4096, 44), 44, /numGTEsPerGT/],
    ['newline detector', (b: Buffer) => b.writeUInt8(0x0a, 75), 73, /text-mode/],
    ['descriptor past EOF', (b: Buffer) => b.writeBigUInt64LE(1n << 30n, 28), 28, /past the end/],
    ['descriptor too large', (b: Buffer) => b.writeBigUInt64LE(1n << 12n, 36), 36, /too large/],
  ])('refuses %s', (_name, edit, offset, message) => {
    const e = fails(header(edit as (b: Buffer) => void), 8 << 20);
    expect(e).toBeInstanceOf(DiskFormatError);
    expect(e.offset).toBe(offset);
    expect(e.structure).toBe('sparse header');
    expect(e.message).toMatch(message as RegExp);
  });

  it('refuses unknown versions and incompatible features as unsupported', () => {
    expect(fails(header((b) => b.writeUInt32LE(4, 4)))).toBeInstanceOf(UnsupportedFormatError);
    expect(fails(header((b) => b.writeUInt32LE(0x40000, 8)))).toBeInstanceOf(UnsupportedFormatError);
    expect(fails(header((b) => { b.writeUInt32LE(0x30003, 8); b.writeUInt16LE(2, 77); }))).toBeInstanceOf(UnsupportedFormatError);
  });

  it('reports offsets relative to where the header sits (stream footer)', () => {
    const e = (() => {
      try {
        parseSparseHeader(header((b) => b.writeBigUInt64LE(0n, 20)), 'f.vmdk', 1 << 20, 4096, 'stream footer');
      } catch (x) {
        return x as DiskFormatError;
      }
      throw new Error('expected an error');
    })();
    expect(e.structure).toBe('stream footer');
    expect(e.offset).toBe(4096 + 20);
  });
});
