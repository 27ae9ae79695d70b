import { flatExtent, isSparseHeader, looksLikeDescriptor, parseDescriptor } from './vmdk-descriptor';

const ESXI_DESCRIPTOR = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW 131072 VMFS "demo_0-flat.vmdk"

# The Disk Data Base
#DDB
ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "8"
`;

describe('VMDK descriptor (minimal)', () => {
  it('finds the VMFS extent of an ESXi descriptor', () => {
    const descriptor = parseDescriptor(ESXI_DESCRIPTOR);
    expect(descriptor.createType).toBe('vmfs');
    expect(descriptor.extents).toEqual([{ access: 'RW', sectors: 131072, type: 'VMFS', file: 'demo_0-flat.vmdk', offset: 0 }]);
    expect(flatExtent(descriptor)).toEqual({ file: 'demo_0-flat.vmdk', offsetBytes: 0, sizeBytes: 64 * 1024 * 1024 });
  });

  it('honours the sector offset of a FLAT extent and CRLF line ends', () => {
    const text = 'version=1\r\ncreateType="monolithicFlat"\r\nRW 2048 FLAT "x-flat.vmdk" 16\r\n';
    expect(flatExtent(parseDescriptor(text))).toEqual({ file: 'x-flat.vmdk', offsetBytes: 16 * 512, sizeBytes: 2048 * 512 });
  });

  it('refuses layouts the datastore reader cannot read', () => {
    const twoExtents = 'createType="twoGbMaxExtentFlat"\nRW 100 FLAT "a-f001.vmdk" 0\nRW 100 FLAT "a-f002.vmdk" 0\n';
    expect(() => flatExtent(parseDescriptor(twoExtents))).toThrow(/2 extents/);
    const sparse = 'createType="vmfsSparse"\nRW 100 VMFSSPARSE "a-000001-delta.vmdk"\n';
    expect(() => flatExtent(parseDescriptor(sparse))).toThrow(/VMFSSPARSE/);
    const escaping = 'createType="vmfs"\nRW 100 VMFS "../other/x-flat.vmdk"\n';
    expect(() => flatExtent(parseDescriptor(escaping))).toThrow(/plain file name/);
    expect(() => parseDescriptor('RW abc VMFS "x.vmdk"\n')).toThrow(/malformed extent line/);
  });

  it('tells descriptors from data', () => {
    expect(looksLikeDescriptor(Buffer.from(ESXI_DESCRIPTOR))).toBe(true);
    expect(looksLikeDescriptor(Buffer.from('version=1\nno create type here\n'))).toBe(false);
    const binary = Buffer.alloc(512, 7);
    binary.write('createType=', 100);
    expect(looksLikeDescriptor(Buffer.concat([Buffer.from([0]), binary]))).toBe(false);
    expect(isSparseHeader(Buffer.from('KDMV\x01\x00\x00\x00', 'latin1'))).toBe(true);
    expect(isSparseHeader(Buffer.from('COWD', 'latin1'))).toBe(true);
    expect(isSparseHeader(Buffer.from(ESXI_DESCRIPTOR))).toBe(false);
  });
});
