/**
 * The OVF 1.0 descriptor of an exported VM: file references, disk section and a minimal virtual system
 * (CPU, memory, one disk controller per 15 SCSI disks or per 2 IDE disks, the disks). Item elements list
 * their rasd properties in the schema's (alphabetical) order, which VMware's importer checks.
 */
import { ImageWriteError } from './errors';
import type { VmdkAdapterType } from './options';

export type OvaController = 'lsilogic' | 'buslogic' | 'lsilogicsas' | 'pvscsi' | 'ide';
export const OVA_CONTROLLERS: readonly OvaController[] = ['lsilogic', 'buslogic', 'lsilogicsas', 'pvscsi', 'ide'];

export interface OvfDisk {
  /** Member name of the disk file in the OVA. */
  file: string;
  /** Bytes of the disk file. */
  fileSize: number;
  /** Virtual size in bytes. */
  capacity: number;
}

export interface OvfSpec {
  vmName: string;
  cpus: number;
  memoryMiB: number;
  /** VMware guest id (vmw:osType), e.g. "otherGuest64", "ubuntu64Guest". */
  osType: string;
  /** Virtual hardware version: vmx-N. */
  hardwareVersion: number;
  controller: OvaController;
  disks: OvfDisk[];
}

const STREAM_FORMAT = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';

/** The VMDK DDB adapter type that goes with a controller. */
export function ddbAdapterFor(controller: OvaController): VmdkAdapterType {
  return controller === 'ide' ? 'ide' : controller === 'buslogic' ? 'buslogic' : 'lsilogic';
}

export function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

type Rasd = Partial<Record<'Address' | 'AddressOnParent' | 'AllocationUnits' | 'Description' | 'ElementName' | 'HostResource' | 'InstanceID' | 'Parent' | 'ResourceSubType' | 'ResourceType' | 'VirtualQuantity', string | number>>;

function item(props: Rasd): string {
  const lines = Object.keys(props)
    .sort()
    .map((k) => `        <rasd:${k}>${xmlEscape(String(props[k as keyof Rasd]))}</rasd:${k}>`);
  return ['      <Item>', ...lines, '      </Item>'].join('\n');
}

/** Disk slots of one controller: SCSI 0–15 without 7 (the controller's own id), IDE master and slave. */
const slotsOf = (controller: OvaController): number[] => (controller === 'ide' ? [0, 1] : [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15]);
const maxControllers = (controller: OvaController): number => (controller === 'ide' ? 2 : 4);

/** Refuses more disks than the controllers of a VM can take. */
export function checkDiskCount(controller: OvaController, disks: number, target: string): void {
  const max = maxControllers(controller) * slotsOf(controller).length;
  if (disks > max) throw new ImageWriteError(`an OVA with ${controller} controllers holds at most ${max} disks, got ${disks}`, target);
}

function hardwareItems(spec: OvfSpec): string[] {
  const ide = spec.controller === 'ide';
  const slots = slotsOf(spec.controller);
  checkDiskCount(spec.controller, spec.disks.length, spec.vmName);
  const controllers = Math.ceil(spec.disks.length / slots.length);
  const items = [
    item({ AllocationUnits: 'hertz * 10^6', Description: 'Number of Virtual CPUs', ElementName: `${spec.cpus} virtual CPU(s)`, InstanceID: 1, ResourceType: 3, VirtualQuantity: spec.cpus }),
    item({ AllocationUnits: 'byte * 2^20', Description: 'Memory Size', ElementName: `${spec.memoryMiB}MB of memory`, InstanceID: 2, ResourceType: 4, VirtualQuantity: spec.memoryMiB }),
  ];
  let id = 3;
  const controllerIds: number[] = [];
  for (let c = 0; c < controllers; c++) {
    controllerIds.push(id);
    const subType = spec.controller === 'pvscsi' ? 'VirtualSCSI' : spec.controller;
    items.push(
      ide
        ? item({ Address: c, Description: `IDE Controller ${c}`, ElementName: `ideController${c}`, InstanceID: id++, ResourceType: 5 })
        : item({ Address: c, Description: 'SCSI Controller', ElementName: `SCSI Controller ${c}`, InstanceID: id++, ResourceSubType: subType, ResourceType: 6 }),
    );
  }
  spec.disks.forEach((_, i) => {
    items.push(
      item({
        AddressOnParent: slots[i % slots.length],
        ElementName: `Hard disk ${i + 1}`,
        HostResource: `ovf:/disk/vmdisk${i + 1}`,
        InstanceID: id++,
        Parent: controllerIds[Math.floor(i / slots.length)],
        ResourceType: 17,
      }),
    );
  });
  return items;
}

export function buildOvf(spec: OvfSpec): string {
  const name = xmlEscape(spec.vmName);
  const files = spec.disks.map((d, i) => `    <File ovf:href="${xmlEscape(d.file)}" ovf:id="file${i + 1}" ovf:size="${d.fileSize}"/>`);
  const disks = spec.disks.map(
    (d, i) => `    <Disk ovf:capacity="${d.capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk${i + 1}" ovf:fileRef="file${i + 1}" ovf:format="${STREAM_FORMAT}"/>`,
  );
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"' +
      ' xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"' +
      ' xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"' +
      ' xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
    '  <References>',
    ...files,
    '  </References>',
    '  <DiskSection>',
    '    <Info>Virtual disk information</Info>',
    ...disks,
    '  </DiskSection>',
    `  <VirtualSystem ovf:id="${name}">`,
    '    <Info>A virtual machine</Info>',
    `    <Name>${name}</Name>`,
    `    <OperatingSystemSection ovf:id="102" vmw:osType="${xmlEscape(spec.osType)}">`,
    '      <Info>The kind of installed guest operating system</Info>',
    '    </OperatingSystemSection>',
    '    <VirtualHardwareSection>',
    '      <Info>Virtual hardware requirements</Info>',
    '      <System>',
    '        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>',
    '        <vssd:InstanceID>0</vssd:InstanceID>',
    `        <vssd:VirtualSystemIdentifier>${name}</vssd:VirtualSystemIdentifier>`,
    `        <vssd:VirtualSystemType>vmx-${spec.hardwareVersion}</vssd:VirtualSystemType>`,
    '      </System>',
    ...hardwareItems(spec),
    '    </VirtualHardwareSection>',
    '  </VirtualSystem>',
    '</Envelope>',
    '',
  ].join('\n');
}
