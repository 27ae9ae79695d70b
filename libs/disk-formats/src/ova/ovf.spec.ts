import { DiskFormatError } from '../errors';
import { allocationUnits, parseOvf } from './ovf';

describe('OVF', () => {
  it('reads files and disks with any namespace prefix, entities and units', () => {
    const xml = `<ovf:Envelope xmlns:ovf="x"><ovf:References>
      <ovf:File ovf:href="a&amp;b.vmdk" ovf:id="f1" ovf:size="42"/></ovf:References>
      <ovf:DiskSection><ovf:Disk ovf:diskId="d1" ovf:fileRef='f1' ovf:capacity="2" ovf:capacityAllocationUnits="GigaBytes"/></ovf:DiskSection>
      </ovf:Envelope>`;
    const d = parseOvf(xml, 'x.ovf');
    expect(d.files).toEqual([{ id: 'f1', href: 'a&b.vmdk', size: 42, compression: undefined }]);
    expect(d.disks[0]).toMatchObject({ diskId: 'd1', capacity: 2 * 1024 ** 3, file: d.files[0] });
    expect(allocationUnits('byte * 2^10', 'x')).toBe(1024);
    expect(allocationUnits('byte * 512', 'x')).toBe(512);
    expect(allocationUnits(undefined, 'x')).toBe(1);
  });

  it('refuses dangling references, bad numbers and absurd capacities', () => {
    const env = (disk: string) => `<Envelope><References/><DiskSection>${disk}</DiskSection></Envelope>`;
    expect(() => parseOvf(env('<Disk diskId="d" fileRef="nope" capacity="1"/>'), 'x')).toThrow(/unknown file/);
    expect(() => parseOvf(env('<Disk diskId="d" capacity="-1"/>'), 'x')).toThrow(DiskFormatError);
    expect(() => parseOvf(env('<Disk diskId="d" capacity="99999999" capacityAllocationUnits="byte * 2^40"/>'), 'x')).toThrow(/out of range/);
    expect(() => parseOvf(env('<Disk capacity="1"/>'), 'x')).toThrow(/without diskId/);
  });
});
