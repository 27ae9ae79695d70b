import { inflateSync } from 'node:zlib';
import { deflateOrdered } from './compress';
import { biosGeometry, buildDescriptor, encodeMarker, encodeSparseHeader, GD_AT_END, gdEntries, randomCid } from './vmdk-meta';

describe('VMDK metadata', () => {
  it('encodes the sparse header fields at their offsets', () => {
    const h = encodeSparseHeader({
      version: 3,
      flags: 0x30001,
      capacitySectors: 2 ** 33 + 5,
      grainSectors: 128,
      descriptorOffset: 1,
      descriptorSectors: 2,
      rgdOffset: 0,
      gdOffset: GD_AT_END,
      overHead: 3,
      compressAlgorithm: 1,
    });
    expect(h.length).toBe(512);
    expect(h.toString('latin1', 0, 4)).toBe('KDMV');
    expect(h.readUInt32LE(8)).toBe(0x30001);
    expect(h.readBigUInt64LE(12)).toBe(2n ** 33n + 5n);
    expect(h.readUInt32LE(44)).toBe(512);
    expect(h.readBigUInt64LE(56)).toBe(0xffffffffffffffffn);
    expect([...h.subarray(73, 77)]).toEqual([0x0a, 0x20, 0x0d, 0x0a]);
    expect(h.readUInt16LE(77)).toBe(1);
    const m = encodeMarker(4, 1);
    expect([m.readBigUInt64LE(0), m.readUInt32LE(8), m.readUInt32LE(12)]).toEqual([4n, 0, 1]);
  });

  it('computes geometry, directory size and identifiers', () => {
    expect(biosGeometry(41943040, 'lsilogic')).toEqual({ cylinders: 2610, heads: 255, sectors: 63 });
    expect(biosGeometry(2 ** 32, 'ide')).toEqual({ cylinders: 16383, heads: 16, sectors: 63 });
    expect(gdEntries(65536 + 1)).toBe(2);
    expect(randomCid()).toMatch(/^[0-9a-f]{8}$/);
    const text = buildDescriptor(
      { createType: 'monolithicSparse', capacitySectors: 2048, extentType: 'SPARSE', extentFile: 'a.vmdk', adapterType: 'ide', virtualHWVersion: 4, cid: '12345678' },
      'a.vmdk',
    );
    expect(text.split('\n').slice(0, 6)).toEqual(['# Disk DescriptorFile', 'version=1', 'encoding="UTF-8"', 'CID=12345678', 'parentCID=ffffffff', 'createType="monolithicSparse"']);
    expect(text).toContain('RW 2048 SPARSE "a.vmdk"');
    expect(() => buildDescriptor({ createType: 'vmfs', capacitySectors: 1, extentType: 'VMFS', extentFile: 'x"y', adapterType: 'ide', virtualHWVersion: 4 }, 'x')).toThrow(
      'cannot be named in a VMDK descriptor',
    );
  });

  it('deflates in parallel and keeps the input order', async () => {
    async function* items() {
      for (let i = 0; i < 40; i++) yield Buffer.alloc(65536 - i * 1000, i);
    }
    const out: Buffer[] = [];
    for await (const { item, compressed } of deflateOrdered(items(), (b) => b, 6, 4)) {
      expect(inflateSync(compressed).equals(item)).toBe(true);
      out.push(item);
    }
    expect(out.map((b) => b[0])).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });
});
