import { parseDescriptor } from '@vmkeep/disk-formats';
import { flatExtent, isSparseHeader, looksLikeDescriptor } from './vmdk-descriptor';

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

/** A minimal valid descriptor with the given createType and extent lines. */
const descriptor = (createType: string, ...extents: string[]) =>
  parseDescriptor(`version=1\nCID=fffffffe\ncreateType="${createType}"\n${extents.join('\n')}\n`, 'x.vmdk');

describe('flat extent of a VMDK descriptor', () => {
  it('finds the VMFS extent of an ESXi descriptor', () => {
    expect(flatExtent(parseDescriptor(ESXI_DESCRIPTOR, 'demo_0.vmdk'))).toEqual({ file: 'demo_0-flat.vmdk', offsetBytes: 0, sizeBytes: 64 * 1024 * 1024 });
  });

  it('honours the sector offset of a FLAT extent', () => {
    expect(flatExtent(descriptor('monolithicFlat', 'RW 2048 FLAT "x-flat.vmdk" 16'))).toEqual({ file: 'x-flat.vmdk', offsetBytes: 16 * 512, sizeBytes: 2048 * 512 });
  });

  it('refuses layouts the datastore reader cannot read', () => {
    expect(() => flatExtent(descriptor('twoGbMaxExtentFlat', 'RW 100 FLAT "a-f001.vmdk" 0', 'RW 100 FLAT "a-f002.vmdk" 0'))).toThrow(/2 extents/);
    expect(() => flatExtent(descriptor('vmfsSparse', 'RW 100 VMFSSPARSE "a-000001-delta.vmdk"'))).toThrow(/VMFSSPARSE/);
    expect(() => flatExtent(descriptor('vmfs', 'RW 100 VMFS "../other/x-flat.vmdk"'))).toThrow(/plain file name/);
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
