/**
 * A VM's configuration as a restore needs it (guest OS, CPUs, memory, firmware, controllers, disk placement,
 * NICs with their networks), read from config.* properties, and the device specs that rebuild it.
 */
import { VsphereError } from './errors';
import { arrayItems, bool, field, int, moRef, text, xsiType, type SoapValue } from './values';
import { parseDatastorePath } from './devices';
import type { MoRef } from './types';

export interface VmControllerConfig {
  key: number;
  /** vim25 type, e.g. "VirtualLsiLogicController", "ParaVirtualSCSIController", "VirtualIDEController". */
  type: string;
  busNumber: number;
  /** SCSI controllers: "noSharing" | "virtualSharing" | "physicalSharing". */
  sharedBus?: string;
}

export interface VmDiskConfig {
  key: number;
  controllerKey: number;
  unitNumber: number;
  capacityBytes: number;
  /** "[datastore] folder/disk.vmdk" */
  fileName: string;
  datastore: string;
  diskMode: string;
  thin: boolean;
}

export interface VmNicConfig {
  key: number;
  /** vim25 type, e.g. "VirtualVmxnet3", "VirtualE1000". */
  type: string;
  /** Network (port group) name the NIC is connected to. */
  network: string;
  addressType?: string;
  macAddress?: string;
  startConnected: boolean;
}

/** What a restore point keeps of its VM (stored as JSON: plain data only). */
export interface VmConfig {
  name: string;
  guestId?: string;
  firmware?: string;
  annotation?: string;
  numCPUs: number;
  numCoresPerSocket?: number;
  memoryMB: number;
  controllers: VmControllerConfig[];
  disks: VmDiskConfig[];
  nics: VmNicConfig[];
}

/** Properties VirtualMachine must be read with for parseVmConfig. */
export const VM_CONFIG_PATHS = [
  'name',
  'config.guestId',
  'config.firmware',
  'config.annotation',
  'config.hardware.numCPU',
  'config.hardware.numCoresPerSocket',
  'config.hardware.memoryMB',
  'config.hardware.device',
];

/** Controllers a new VM does not have by itself (IDE, PS/2, PCI... come with every VM). */
export const ADDABLE_CONTROLLERS = new Set([
  'VirtualLsiLogicController',
  'VirtualLsiLogicSASController',
  'ParaVirtualSCSIController',
  'VirtualBusLogicController',
  'VirtualAHCIController',
  'VirtualNVMEController',
]);
const CONTROLLER_TYPES = new Set([...ADDABLE_CONTROLLERS, 'VirtualIDEController', 'VirtualSATAController']);
const SCSI_CONTROLLERS = new Set(['VirtualLsiLogicController', 'VirtualLsiLogicSASController', 'ParaVirtualSCSIController', 'VirtualBusLogicController']);
export const NIC_TYPES = new Set(['VirtualE1000', 'VirtualE1000e', 'VirtualVmxnet', 'VirtualVmxnet2', 'VirtualVmxnet3', 'VirtualPCNet32', 'VirtualSriovEthernetCard']);

/** The VmConfig of VirtualMachine properties (VM_CONFIG_PATHS); `networkNames` maps Network ids to names. */
export function parseVmConfig(props: Map<string, SoapValue>, networkNames: Map<string, string> = new Map()): VmConfig {
  const devices = arrayItems(props.get('config.hardware.device'));
  const config: VmConfig = {
    name: text(props.get('name')) ?? '',
    numCPUs: int(props.get('config.hardware.numCPU')) ?? 1,
    memoryMB: int(props.get('config.hardware.memoryMB')) ?? 0,
    controllers: [],
    disks: [],
    nics: [],
  };
  const optional = { guestId: 'config.guestId', firmware: 'config.firmware', annotation: 'config.annotation' } as const;
  for (const [key, path] of Object.entries(optional) as [keyof typeof optional, string][]) {
    const value = text(props.get(path));
    if (value) config[key] = value;
  }
  const cores = int(props.get('config.hardware.numCoresPerSocket'));
  if (cores) config.numCoresPerSocket = cores;

  for (const device of devices) {
    const type = xsiType(device) ?? '';
    const key = int(field(device, 'key')) ?? 0;
    const backing = field(device, 'backing');
    if (CONTROLLER_TYPES.has(type)) {
      const controller: VmControllerConfig = { key, type, busNumber: int(field(device, 'busNumber')) ?? 0 };
      const sharedBus = text(field(device, 'sharedBus'));
      if (sharedBus) controller.sharedBus = sharedBus;
      config.controllers.push(controller);
    } else if (type === 'VirtualDisk') {
      const fileName = text(field(backing, 'fileName')) ?? '';
      config.disks.push({
        key,
        controllerKey: int(field(device, 'controllerKey')) ?? 0,
        unitNumber: int(field(device, 'unitNumber')) ?? 0,
        capacityBytes: int(field(device, 'capacityInBytes')) || (int(field(device, 'capacityInKB')) ?? 0) * 1024,
        fileName,
        datastore: parseDatastorePath(fileName)?.datastore ?? '',
        diskMode: text(field(backing, 'diskMode')) ?? 'persistent',
        thin: bool(field(backing, 'thinProvisioned')) ?? false,
      });
    } else if (NIC_TYPES.has(type)) {
      const networkRef = moRef(field(backing, 'network'));
      const network = text(field(backing, 'deviceName')) || (networkRef && networkNames.get(networkRef.value)) || '';
      const nic: VmNicConfig = {
        key,
        type,
        network,
        startConnected: bool(field(field(device, 'connectable'), 'startConnected')) ?? true,
      };
      const addressType = text(field(device, 'addressType'));
      if (addressType) nic.addressType = addressType;
      const mac = text(field(device, 'macAddress'));
      if (mac) nic.macAddress = mac;
      config.nics.push(nic);
    }
  }
  return config;
}

/** A device as node-soap serialises it: the vim25 type as xsi:type, members in the reference's order. */
type DeviceArg = Record<string, unknown>;

export interface DeviceChange {
  operation: 'add' | 'remove' | 'edit';
  fileOperation?: 'create' | 'destroy' | 'replace';
  device: DeviceArg;
}

export function controllerDevice(controller: VmControllerConfig, key: number): DeviceArg {
  const device: DeviceArg = { attributes: { 'xsi:type': controller.type }, key, busNumber: controller.busNumber };
  if (SCSI_CONTROLLERS.has(controller.type)) device.sharedBus = controller.sharedBus ?? 'noSharing';
  return device;
}

export interface DiskDeviceSpec {
  key: number;
  controllerKey: number;
  unitNumber: number;
  capacityBytes: number;
  fileName: string;
  datastore?: MoRef;
  diskMode: string;
  thin: boolean;
}

export function diskDevice(disk: DiskDeviceSpec): DeviceArg {
  const backing: DeviceArg = { attributes: { 'xsi:type': 'VirtualDiskFlatVer2BackingInfo' }, fileName: disk.fileName };
  if (disk.datastore) backing.datastore = { attributes: { type: disk.datastore.type }, $value: disk.datastore.value };
  backing.diskMode = disk.diskMode;
  backing.thinProvisioned = disk.thin;
  return {
    attributes: { 'xsi:type': 'VirtualDisk' },
    key: disk.key,
    backing,
    controllerKey: disk.controllerKey,
    unitNumber: disk.unitNumber,
    capacityInKB: Math.ceil(disk.capacityBytes / 1024),
    capacityInBytes: disk.capacityBytes,
  };
}

export function nicDevice(nic: VmNicConfig, key: number, network: MoRef): DeviceArg {
  if (!NIC_TYPES.has(nic.type)) throw new VsphereError(`unsupported network adapter type ${nic.type}`);
  return {
    attributes: { 'xsi:type': nic.type },
    key,
    backing: {
      attributes: { 'xsi:type': 'VirtualEthernetCardNetworkBackingInfo' },
      deviceName: nic.network,
      network: { attributes: { type: network.type }, $value: network.value },
    },
    connectable: { startConnected: nic.startConnected, allowGuestControl: true, connected: false },
    // A restored copy gets a new MAC unless the original's is kept (overwrite keeps the VM itself).
    addressType: 'generated',
  };
}

/** node-soap arguments of a deviceChange list. */
export function deviceChangeArgs(changes: DeviceChange[]): Record<string, unknown>[] {
  return changes.map((change) => ({
    operation: change.operation,
    ...(change.fileOperation ? { fileOperation: change.fileOperation } : {}),
    device: change.device,
  }));
}
