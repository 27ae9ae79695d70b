import { parseVersionsXml, sessionCookie } from './connection';
import { folderUrl, parseContentRange } from './datastore-disk';
import { parseDatastorePath, parseDisks, parseSnapshots } from './devices';

const T = 'XMLSchema-instance:type';
const disk = (key: number, fileName: string, backing: Record<string, unknown> = {}, backingType = 'VirtualDiskFlatVer2BackingInfo') => ({
  attributes: { [T]: 'VirtualDisk' },
  key: String(key),
  deviceInfo: { label: `Hard disk ${key - 1999}` },
  backing: { attributes: { [T]: backingType }, fileName, diskMode: 'persistent', ...backing },
  capacityInKB: '2048',
  capacityInBytes: '2097152',
});

describe('parseDisks', () => {
  it('reads VirtualDisks of an ArrayOfVirtualDevice and marks what snapshots cannot include', () => {
    const devices = {
      attributes: { [T]: 'ArrayOfVirtualDevice' },
      VirtualDevice: [
        { attributes: { [T]: 'VirtualLsiLogicController' }, key: '1000' },
        disk(2000, '[ds1] vm/vm.vmdk', { changeId: '52 1a/4' }),
        disk(2001, '[ds1] vm/vm_1.vmdk', { diskMode: 'independent_persistent' }),
        disk(2002, '[ds2] vm/rdm.vmdk', { compatibilityMode: 'physicalMode' }, 'VirtualDiskRawDiskMappingVer1BackingInfo'),
      ],
    };
    const disks = parseDisks(devices);
    expect(disks.map((d) => d.key)).toEqual([2000, 2001, 2002]);
    expect(disks[0]).toEqual({
      key: 2000,
      label: 'Hard disk 1',
      capacityBytes: 2097152,
      fileName: '[ds1] vm/vm.vmdk',
      datastore: 'ds1',
      diskMode: 'persistent',
      changeId: '52 1a/4',
    });
    expect(disks[1].skipReason).toMatch(/independent/);
    expect(disks[2].skipReason).toMatch(/physical-mode raw device mapping/);
    expect(disks[2].datastore).toBe('ds2');
  });

  it('handles a single device (not an array) and KB-only capacity', () => {
    const single = { ...disk(2000, '[ds] a.vmdk'), capacityInBytes: undefined };
    expect(parseDisks({ attributes: { [T]: 'ArrayOfVirtualDevice' }, VirtualDevice: single })).toMatchObject([{ key: 2000, capacityBytes: 2048 * 1024 }]);
    expect(parseDisks(undefined)).toEqual([]);
  });
});

describe('parseSnapshots', () => {
  it('flattens the snapshot tree, parents first', () => {
    const ref = (v: string) => ({ attributes: { type: 'VirtualMachineSnapshot' }, $value: v });
    const info = {
      currentSnapshot: ref('snapshot-3'),
      rootSnapshotList: {
        snapshot: ref('snapshot-1'),
        name: 'base',
        description: 'first',
        childSnapshotList: [
          { snapshot: ref('snapshot-2'), name: 'child-a' },
          { snapshot: ref('snapshot-3'), name: 'child-b' },
        ],
      },
    };
    expect(parseSnapshots(info)).toEqual([
      { ref: { type: 'VirtualMachineSnapshot', value: 'snapshot-1' }, name: 'base', description: 'first' },
      { ref: { type: 'VirtualMachineSnapshot', value: 'snapshot-2' }, name: 'child-a' },
      { ref: { type: 'VirtualMachineSnapshot', value: 'snapshot-3' }, name: 'child-b' },
    ]);
    expect(parseSnapshots(undefined)).toEqual([]);
  });
});

describe('wire details', () => {
  it('splits datastore paths', () => {
    expect(parseDatastorePath('[LocalDS_0] vm 1/disk.vmdk')).toEqual({ datastore: 'LocalDS_0', path: 'vm 1/disk.vmdk' });
    expect(parseDatastorePath('disk.vmdk')).toBeUndefined();
  });

  it('builds /folder URLs with escaped segments and query', () => {
    expect(folderUrl('vm 1/disk#1.vmdk', 'Folder/DC 0', 'ds&1')).toBe('/folder/vm%201/disk%231.vmdk?dcPath=Folder%2FDC%200&dsName=ds%261');
  });

  it('parses Content-Range', () => {
    expect(parseContentRange('bytes 100-199/1000')).toEqual({ start: 100, end: 199, total: 1000 });
    expect(parseContentRange('bytes 0-0/*')).toEqual({ start: 0, end: 0 });
    expect(parseContentRange('bytes */1000')).toBeUndefined();
    expect(parseContentRange(undefined)).toBeUndefined();
  });

  it('reads the vim25 version from vimServiceVersions.xml, ignoring prior versions', () => {
    const xml = `<?xml version="1.0"?><namespaces version="1.0"><namespace><name>urn:vim25</name><version>8.0.2.0</version>
      <priorVersions><version>8.0.1.0</version></priorVersions></namespace><namespace><name>urn:vim2</name><version>2.5</version></namespace></namespaces>`;
    expect(parseVersionsXml(xml)).toBe('8.0.2.0');
    expect(parseVersionsXml('<html>not found</html>')).toBeUndefined();
  });

  it('extracts the session cookie from Set-Cookie headers', () => {
    expect(sessionCookie(['other=1; Path=/', 'vmware_soap_session="52a1-bc"; Path=/; HttpOnly; Secure'])).toBe('"52a1-bc"');
    expect(sessionCookie('vmware_soap_session=abc; HttpOnly')).toBe('abc');
    expect(sessionCookie(undefined)).toBeUndefined();
  });
});
