import { diskDevice, nicDevice, parseVmConfig } from './vm-config';

const typed = (type: string, fields: Record<string, unknown>) => ({ attributes: { 'xsi:type': type }, ...fields });

describe('parseVmConfig', () => {
  const devices = typed('ArrayOfVirtualDevice', {
    VirtualDevice: [
      typed('VirtualIDEController', { key: '200', busNumber: '0' }),
      typed('ParaVirtualSCSIController', { key: '1000', busNumber: '0', sharedBus: 'noSharing' }),
      typed('VirtualDisk', {
        key: '2000',
        controllerKey: '1000',
        unitNumber: '0',
        capacityInKB: '4096',
        backing: typed('VirtualDiskFlatVer2BackingInfo', { fileName: '[ds1] web/web.vmdk', diskMode: 'persistent', thinProvisioned: 'true' }),
      }),
      typed('VirtualVmxnet3', {
        key: '4000',
        addressType: 'assigned',
        macAddress: '00:50:56:01:02:03',
        connectable: { startConnected: 'false' },
        backing: typed('VirtualEthernetCardNetworkBackingInfo', { deviceName: '', network: { attributes: { type: 'Network' }, $value: 'network-7' } }),
      }),
    ],
  });
  const props = new Map<string, unknown>([
    ['name', 'web'],
    ['config.guestId', 'ubuntu64Guest'],
    ['config.firmware', 'efi'],
    ['config.hardware.numCPU', '4'],
    ['config.hardware.memoryMB', '2048'],
    ['config.hardware.device', devices],
  ]);

  it('reads guest, CPUs, memory, controllers, disks and NICs (network name from the ref when deviceName is empty)', () => {
    expect(parseVmConfig(props, new Map([['network-7', 'DMZ']]))).toEqual({
      name: 'web',
      guestId: 'ubuntu64Guest',
      firmware: 'efi',
      numCPUs: 4,
      memoryMB: 2048,
      controllers: [
        { key: 200, type: 'VirtualIDEController', busNumber: 0 },
        { key: 1000, type: 'ParaVirtualSCSIController', busNumber: 0, sharedBus: 'noSharing' },
      ],
      disks: [{ key: 2000, controllerKey: 1000, unitNumber: 0, capacityBytes: 4 * 1024 * 1024, fileName: '[ds1] web/web.vmdk', datastore: 'ds1', diskMode: 'persistent', thin: true }],
      nics: [{ key: 4000, type: 'VirtualVmxnet3', network: 'DMZ', addressType: 'assigned', macAddress: '00:50:56:01:02:03', startConnected: false }],
    });
  });
});

describe('device specs', () => {
  it('writes a flat disk backing attached to an existing file, members in WSDL order', () => {
    const device = diskDevice({ key: -1, controllerKey: -100, unitNumber: 1, capacityBytes: 1536, fileName: '[ds] a/a.vmdk', diskMode: 'persistent', thin: false });
    expect(Object.keys(device)).toEqual(['attributes', 'key', 'backing', 'controllerKey', 'unitNumber', 'capacityInKB', 'capacityInBytes']);
    expect(device).toMatchObject({ capacityInKB: 2, backing: { fileName: '[ds] a/a.vmdk', thinProvisioned: false } });
  });

  it('refuses an unknown NIC type', () => {
    expect(() => nicDevice({ key: 1, type: 'VirtualFloppy', network: 'x', startConnected: true }, -5, { type: 'Network', value: 'n' })).toThrow(/unsupported network adapter/);
  });
});
