import { FileSystemError } from '../errors';
import { parseBoot } from './boot';
import { lznt1Decompress } from './lznt1';
import { applyFixup } from './record';
import { decodeRuns } from './runs';

describe('run lists', () => {
  test('decode lengths, signed relative offsets and sparse runs', () => {
    // 4 clusters at 100; 2 sparse; 3 clusters at 100 - 40 = 60.
    const buf = Buffer.from([0x11, 4, 100, 0x01, 2, 0x11, 3, 0xd8, 0]);
    expect(decodeRuns(buf, 0, buf.length, 0, 1000, 0)).toEqual([
      { vcn: 0, count: 4, lcn: 100 },
      { vcn: 4, count: 2, lcn: null },
      { vcn: 6, count: 3, lcn: 60 },
    ]);
  });

  test('runs outside the volume, before cluster 0 or with bad headers are typed errors', () => {
    expect(() => decodeRuns(Buffer.from([0x11, 4, 100, 0]), 0, 4, 0, 50, 0)).toThrow(/outside the 50-cluster volume/);
    expect(() => decodeRuns(Buffer.from([0x11, 4, 0x80, 0]), 0, 4, 0, 1000, 0)).toThrow(FileSystemError);
    expect(() => decodeRuns(Buffer.from([0x19, 4, 1, 0]), 0, 4, 0, 1000, 0)).toThrow(/bad run header/);
    expect(() => decodeRuns(Buffer.from([0x11, 0, 1, 0]), 0, 4, 0, 1000, 0)).toThrow(/run length 0/);
  });
});

describe('boot sector', () => {
  const boot = () => {
    const b = Buffer.alloc(512);
    b.write('NTFS    ', 3, 'latin1');
    b.writeUInt16LE(512, 11);
    b[13] = 8;
    b.writeBigUInt64LE(2047n, 0x28);
    b.writeBigUInt64LE(4n, 0x30);
    b[0x40] = 0xf6; // 2^10 = 1024-byte records
    b[0x44] = 1; // one cluster per index record
    b.writeUInt16LE(0xaa55, 510);
    return b;
  };

  test('sizes given as clusters and as negative powers of two', () => {
    const g = parseBoot(boot(), 1024 * 1024);
    expect([g.clusterSize, g.mftRecordSize, g.indexRecordSize, g.mftLcn, g.size]).toEqual([4096, 1024, 4096, 4, 2047 * 512]);
  });

  test('bad geometry is a typed error', () => {
    const b = boot();
    b[13] = 3;
    expect(() => parseBoot(b, 1024 * 1024)).toThrow(/sectors per cluster/);
    const c = boot();
    c[0x40] = 0x80;
    expect(() => parseBoot(c, 1024 * 1024)).toThrow(/MFT record size/);
    expect(() => parseBoot(boot(), 4096)).toThrow(/do not fit/);
  });
});

describe('LZNT1', () => {
  test('literals and an overlapping back reference', () => {
    const src = Buffer.from([0x05, 0xb0, 0x08, 0x61, 0x62, 0x63, 0x03, 0x20]);
    const out = Buffer.alloc(16);
    lznt1Decompress(src, out, 0);
    expect(out.subarray(0, 10).toString('latin1')).toBe('abcabcabc\0');
  });

  test('a reference before the chunk start is a typed error', () => {
    const src = Buffer.from([0x03, 0xb0, 0x02, 0x61, 0x03, 0x70]);
    expect(() => lznt1Decompress(src, Buffer.alloc(4096), 0)).toThrow(/reaches before the chunk/);
  });
});

test('update sequence fixups are checked and undone', () => {
  const rec = Buffer.alloc(1024);
  rec.write('FILE', 0, 'latin1');
  rec.writeUInt16LE(0x30, 4);
  rec.writeUInt16LE(3, 6);
  rec.writeUInt16LE(0x1234, 0x30);
  rec.writeUInt16LE(0xaaaa, 0x32);
  rec.writeUInt16LE(0xbbbb, 0x34);
  rec.writeUInt16LE(0x1234, 510);
  rec.writeUInt16LE(0x1234, 1022);
  const torn = Buffer.from(rec);
  applyFixup(rec, 'FILE', 'MFT record 0', 0);
  expect([rec.readUInt16LE(510), rec.readUInt16LE(1022)]).toEqual([0xaaaa, 0xbbbb]);
  torn.writeUInt16LE(0x1235, 1022);
  expect(() => applyFixup(torn, 'FILE', 'MFT record 0', 0)).toThrow(/sector 1/);
});
