/** Readers for a VM's (or snapshot's) config.hardware.device and snapshot tree. */
import type { MoRef, VmDiskInfo } from './types';
import { arrayItems, field, int, moRef, refKey, text, xsiType, type SoapValue } from './values';

/** "[datastore] folder/disk.vmdk" → its parts; undefined for anything else. */
export function parseDatastorePath(fileName: string): { datastore: string; path: string } | undefined {
  const match = /^\[([^\]]+)\]\s*(.*)$/.exec(fileName.trim());
  return match ? { datastore: match[1], path: match[2] } : undefined;
}

/** Why a disk cannot be backed up through a snapshot, or undefined when it can. */
export function diskSkipReason(diskMode: string | undefined, backingType: string | undefined, compatibilityMode: string | undefined): string | undefined {
  if (diskMode?.startsWith('independent')) {
    return `independent disk (${diskMode}): not included in snapshots`;
  }
  if (backingType === 'VirtualDiskRawDiskMappingVer1BackingInfo' && compatibilityMode === 'physicalMode') {
    return 'physical-mode raw device mapping: not included in snapshots';
  }
  return undefined;
}

/**
 * The VirtualDisk devices of a config.hardware.device value. The datastore name comes from the "[ds] path"
 * file name; `datastoreNames` (refKey → name) is the fallback for a file name without brackets.
 */
export function parseDisks(devices: SoapValue, datastoreNames: Map<string, string> = new Map()): VmDiskInfo[] {
  return arrayItems(devices)
    .filter((device) => xsiType(device) === 'VirtualDisk')
    .map((device) => {
      const backing = field(device, 'backing');
      const fileName = text(field(backing, 'fileName')) ?? '';
      const dsRef = moRef(field(backing, 'datastore'));
      // The bracketed name is what /folder's dsName takes; the ref is a fallback for odd file names.
      const datastore = parseDatastorePath(fileName)?.datastore ?? (dsRef && datastoreNames.get(refKey(dsRef))) ?? '';
      const capacityBytes = int(field(device, 'capacityInBytes')) || (int(field(device, 'capacityInKB')) ?? 0) * 1024;
      const diskMode = text(field(backing, 'diskMode'));
      const changeId = text(field(backing, 'changeId'));
      const skipReason = diskSkipReason(diskMode, xsiType(backing), text(field(backing, 'compatibilityMode')));
      const disk: VmDiskInfo = {
        key: int(field(device, 'key')) ?? 0,
        label: text(field(field(device, 'deviceInfo'), 'label')) ?? '',
        capacityBytes,
        fileName,
        datastore,
      };
      if (diskMode) disk.diskMode = diskMode;
      if (changeId) disk.changeId = changeId;
      if (skipReason) disk.skipReason = skipReason;
      if (xsiType(backing) === 'VirtualDiskRawDiskMappingVer1BackingInfo') {
        disk.rdm = text(field(backing, 'compatibilityMode')) === 'physicalMode' ? 'physical' : 'virtual';
      }
      return disk;
    });
}

export interface SnapshotEntry {
  ref: MoRef;
  name: string;
  description?: string;
}

/** Flattens a VirtualMachineSnapshotInfo's rootSnapshotList (depth first, parents before children). */
export function parseSnapshots(snapshotInfo: SoapValue): SnapshotEntry[] {
  const out: SnapshotEntry[] = [];
  const walk = (trees: SoapValue) => {
    for (const tree of arrayItems(trees)) {
      const ref = moRef(field(tree, 'snapshot'));
      if (ref) {
        const entry: SnapshotEntry = { ref, name: text(field(tree, 'name')) ?? '' };
        const description = text(field(tree, 'description'));
        if (description) entry.description = description;
        out.push(entry);
      }
      walk(field(tree, 'childSnapshotList'));
    }
  };
  walk(field(snapshotInfo, 'rootSnapshotList'));
  return out;
}
