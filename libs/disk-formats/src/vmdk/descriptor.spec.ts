import { DiskFormatError, UnsupportedFormatError } from '../errors';
import { descriptorMetadata, parseDescriptor } from './descriptor';

const VMWARE = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=5352cace
parentCID=ffffffff
isNativeSnapshot="no"
createType="vmfs"

# Extent description
RW 268435456 VMFS "sql-flat.vmdk"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.sectors = "63"
ddb.geometry.heads = "255"
ddb.geometry.cylinders = "16709"
ddb.uuid = "60 00 C2 97 ee 00 4e ed-cb 09 ab 10 91 3f 7f 99"
ddb.longContentID = "abc01f80a6019b4b2fa062d35352cace"
ddb.virtualHWVersion = "7"
ddb.logicalSectorSize = "4096"
ddb.physicalSectorSize = "4096"
`;

function err(text: string): DiskFormatError {
  try {
    parseDescriptor(text, 'x.vmdk');
  } catch (e) {
    return e as DiskFormatError;
  }
  throw new Error('expected an error');
}

describe('parseDescriptor', () => {
  it('reads header, extents and DDB of an ESXi descriptor', () => {
    const d = parseDescriptor(VMWARE, 'sql.vmdk');
    expect(d).toMatchObject({
      version: 1, createType: 'vmfs', cid: '5352cace', parentCid: undefined, size: 268435456 * 512,
      adapterType: 'lsilogic', virtualHWVersion: '7', geometry: { cylinders: 16709, heads: 255, sectors: 63 },
      uuid: '60 00 C2 97 ee 00 4e ed-cb 09 ab 10 91 3f 7f 99', longContentID: 'abc01f80a6019b4b2fa062d35352cace',
      logicalSectorSize: 4096, physicalSectorSize: 4096,
    });
    expect(d.extents).toEqual([{ access: 'RW', sectors: 268435456, type: 'VMFS', file: 'sql-flat.vmdk', offset: 0, line: 10 }]);
    expect(descriptorMetadata(d)).toMatchObject({ geometry: '16709/255/63', cid: '5352cace', 'ddb.virtualHWVersion': '7' });
  });

  it('reads deltas, multiple extents of every type, CRLF line ends, short CIDs and embedded NUL padding', () => {
    const text = [
      'version=3', 'CID=b371b5e', 'parentCID=0000abcd', 'createType="custom"', 'parentFileNameHint="base disk.vmdk"',
      'changeTrackPath="x-ctk.vmdk"', 'RW 100 FLAT "a b-flat.vmdk" 7', 'RDONLY 50 ZERO', 'RW 8 SPARSE "s.vmdk"',
      'RW 8 VMFSSPARSE "d.vmdk"', 'RW 8 SESPARSE "e.vmdk"', 'RW 8 VMFS "v.vmdk"', '',
    ].join('\r\n');
    const d = parseDescriptor(Buffer.concat([Buffer.from(text), Buffer.alloc(300)]), 'x.vmdk');
    expect(d.cid).toBe('0b371b5e');
    expect(d.parentCid).toBe('0000abcd');
    expect(d.parentFileNameHint).toBe('base disk.vmdk');
    expect(d.extents.map((e) => [e.type, e.file, e.offset, e.sectors])).toEqual([
      ['FLAT', 'a b-flat.vmdk', 7, 100], ['ZERO', undefined, 0, 50], ['SPARSE', 's.vmdk', 0, 8],
      ['VMFSSPARSE', 'd.vmdk', 0, 8], ['SESPARSE', 'e.vmdk', 0, 8], ['VMFS', 'v.vmdk', 0, 8],
    ]);
    expect(d.size).toBe(182 * 512);
  });

  it.each([
    ['no version line', 'CID=1\ncreateType="vmfs"\nRW 8 ZERO\n', DiskFormatError, /version/],
    ['unknown version', 'version=7\nCID=1\ncreateType="vmfs"\nRW 8 ZERO\n', UnsupportedFormatError, /version/],
    ['NOACCESS extent', 'version=1\nCID=1\ncreateType="vmfs"\nNOACCESS 8 VMFS "a"\n', UnsupportedFormatError, /NOACCESS/],
    ['device createType', 'version=1\nCID=1\ncreateType="fullDevice"\nRW 8 FLAT "a" 0\n', UnsupportedFormatError, /device/],
    ['RDM extent', 'version=1\nCID=1\ncreateType="vmfs"\nRW 8 VMFSRDM "a"\n', UnsupportedFormatError, /device/],
    ['encrypted', 'version=1\nCID=1\nencryptionKeys="x"\ncreateType="vmfs"\nRW 8 VMFS "a"\n', UnsupportedFormatError, /encrypted/],
    ['FLAT without offset', 'version=1\nCID=1\ncreateType="vmfs"\nRW 8 FLAT "a"\n', DiskFormatError, /offset/],
    ['unknown extent type', 'version=1\nCID=1\ncreateType="vmfs"\nRW 8 WEIRD "a"\n', UnsupportedFormatError, /WEIRD/],
    ['absurd size', 'version=1\nCID=1\ncreateType="vmfs"\nRW 9999999999999999 VMFS "a"\n', DiskFormatError, /absurd/],
    ['absurd total', `version=1\nCID=1\ncreateType="vmfs"\n${'RW 68719476736 ZERO\n'.repeat(3)}`, DiskFormatError, /absurd/],
    ['negative size', 'version=1\nCID=1\ncreateType="vmfs"\nRW -8 VMFS "a"\n', DiskFormatError, /not a number/],
    ['no extents', 'version=1\nCID=1\ncreateType="vmfs"\n', DiskFormatError, /no extents/],
    ['bad CID', 'version=1\nCID=xyz\ncreateType="vmfs"\nRW 8 ZERO\n', DiskFormatError, /CID/],
    ['parent without hint', 'version=1\nCID=1\nparentCID=2\ncreateType="vmfsSparse"\nRW 8 ZERO\n', DiskFormatError, /parentFileNameHint/],
    ['garbage line', 'version=1\nCID=1\ncreateType="vmfs"\nhello world\nRW 8 ZERO\n', DiskFormatError, /unrecognised/],
    ['too many lines', `version=1\n${'\n'.repeat(70000)}`, DiskFormatError, /lines/],
    ['too large', `version=1\n#${'x'.repeat(1024 * 1024)}`, DiskFormatError, /exceeds/],
  ])('refuses %s', (_name, text, type, message) => {
    const e = err(text as string);
    expect(e).toBeInstanceOf(type);
    expect(e.message).toMatch(message as RegExp);
    expect(e.file).toBe('x.vmdk');
    expect(e.structure).toMatch(/^descriptor/);
  });

  it('ends the text at the first NUL and ignores the padding after it', () => {
    const d = parseDescriptor(Buffer.concat([Buffer.from(VMWARE), Buffer.from([0, 1, 0x7f, 0xff])]), 'x.vmdk');
    expect(d.extents).toHaveLength(1);
  });

  it('names the line of a bad extent', () => {
    expect(err('version=1\nCID=1\ncreateType="vmfs"\n\nRW 8 FLAT "a"\n').structure).toBe('descriptor line 5');
  });
});
