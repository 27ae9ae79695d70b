/**
 * The volumes of a whole VM: the partitions of every disk, with LVM2 physical volumes found on partitions or
 * whole disks across all disks, grouped by VG UUID, replaced by the logical volumes they hold. Linear and
 * striped LVs are Volumes that openFileSystem opens; thin, RAID, mirror, snapshot, cache and other segment types
 * are reported as not supported yet; an LV on a missing PV is reported with a MissingPhysicalVolumeError.
 */
import type { Disk } from '@vmkeep/disk';
import { DiskError } from '@vmkeep/disk';
import { FileSystemError, UnsupportedFileSystemError } from '../errors';
import type { Volume } from '../types';
import { listVolumes } from '../volumes';
import { PvLabel, readMetadataArea, readPvLabel } from './label';
import { LogicalVolume } from './logical-volume';
import { parseVolumeGroup, VgLv, VolumeGroup } from './vg';

export { LogicalVolume } from './logical-volume';
export { parseLvmText, LvmSection, MAX_METADATA_BYTES } from './text';
export { lvmCrc, LVM_INITIAL_CRC } from './label';

/** A logical volume needs a physical volume that is on none of the VM's disks. */
export class MissingPhysicalVolumeError extends FileSystemError {
  constructor(
    readonly vgName: string,
    readonly lvName: string,
    /** PV name inside the VG metadata ("pv1"). */
    readonly pvName: string,
    readonly pvUuid: string,
    /** Device path the guest last saw the PV on ("/dev/sdb1"), a hint for the admin. */
    readonly device: string,
  ) {
    super('lvm2', `logical volume ${vgName}/${lvName}`, `physical volume ${pvName} (UUID ${pvUuid}${device ? `, last seen as ${device}` : ''}) is missing from the VM's disks`);
    this.name = 'MissingPhysicalVolumeError';
  }
}

export interface VmVolume {
  /** Stable name: "disk0/1" (disk 0, partition 1; "disk0/0" a whole disk) or "lvm/VG/LV". */
  id: string;
  /** Index of the disk in the input list; null for a logical volume. */
  disk: number | null;
  /** A partition (VolumeDisk) or a LogicalVolume (scheme "lvm"). */
  volume: Volume;
}

export interface VmVolumeFailure {
  /** The volume, LV ("lvm/VG/LV") or disk ("disk1") that could not be listed. */
  id: string;
  error: DiskError;
}

export interface ListVmVolumesResult {
  /** Partitions that are not LVM PVs, and the readable logical volumes. */
  volumes: VmVolume[];
  /** Disks, PVs and LVs that could not be read: damaged metadata, missing PVs, unsupported LV types. */
  failed: VmVolumeFailure[];
  warnings: string[];
}

interface FoundPv {
  id: string;
  disk: number;
  volume: Volume;
  label: PvLabel;
  vg: VolumeGroup | null;
  error: DiskError | null;
}

const asDiskError = (e: unknown): DiskError => {
  if (e instanceof DiskError) return e;
  throw e;
};

/** Lists the volumes of all disks of a VM, assembling LVM2 volume groups across disks. Never writes. */
export async function listVolumesOfVm(disks: Disk[]): Promise<ListVmVolumesResult> {
  const result: ListVmVolumesResult = { volumes: [], failed: [], warnings: [] };
  const pvs: FoundPv[] = [];
  for (let d = 0; d < disks.length; d++) {
    let volumes: Volume[];
    try {
      const listed = await listVolumes(disks[d]);
      volumes = listed.volumes;
      result.warnings.push(...listed.warnings.map((w) => `disk${d}: ${w}`));
    } catch (e) {
      result.failed.push({ id: `disk${d}`, error: asDiskError(e) });
      continue;
    }
    for (const volume of volumes) {
      const id = `disk${d}/${volume.index}`;
      try {
        const label = await readPvLabel(volume);
        if (!label) result.volumes.push({ id, disk: d, volume });
        else pvs.push({ id, disk: d, volume, label, ...(await readPvMetadata(id, volume, label, result.warnings)) });
      } catch (e) {
        result.failed.push({ id, error: asDiskError(e) });
      }
    }
  }
  assembleGroups(pvs, result);
  return result;
}

/** The newest readable VG metadata among the PV's metadata areas; damaged copies are warnings while one is good. */
async function readPvMetadata(id: string, volume: Volume, label: PvLabel, warnings: string[]): Promise<{ vg: VolumeGroup | null; error: DiskError | null }> {
  let vg: VolumeGroup | null = null;
  let error: DiskError | null = null;
  for (const area of label.metadataAreas) {
    try {
      const md = await readMetadataArea(volume, area);
      if (!md) continue;
      const parsed = parseVolumeGroup(md.text, md.offset);
      if (!vg || parsed.seqno > vg.seqno) vg = parsed;
    } catch (e) {
      error = asDiskError(e);
    }
  }
  if (vg && error) warnings.push(`${id}: one LVM metadata copy is damaged (${error.message}); another copy was used`);
  return { vg, error: vg ? null : error };
}

function assembleGroups(pvs: FoundPv[], result: ListVmVolumesResult): void {
  const byUuid = new Map<string, FoundPv>();
  for (const pv of pvs) {
    const other = byUuid.get(pv.label.uuid);
    if (other) result.warnings.push(`${pv.id}: PV UUID ${pv.label.uuid} also found on ${other.id}; ${other.id} is used`);
    else byUuid.set(pv.label.uuid, pv);
  }
  const groups = new Map<string, VolumeGroup>();
  for (const pv of pvs) {
    if (!pv.vg) continue;
    const known = groups.get(pv.vg.uuid);
    if (known && known.seqno !== pv.vg.seqno) result.warnings.push(`VG ${pv.vg.name}: PVs hold metadata of different ages (seqno ${known.seqno} and ${pv.vg.seqno}); the newest is used`);
    if (!known || pv.vg.seqno > known.seqno) groups.set(pv.vg.uuid, pv.vg);
  }
  const claimed = new Set<string>();
  const usedIds = new Set<string>();
  for (const vg of groups.values()) {
    const pvDisks = new Map<string, Disk>();
    for (const [name, pv] of vg.pvs) {
      const found = byUuid.get(pv.uuid);
      if (found) {
        pvDisks.set(name, found.volume);
        claimed.add(found.label.uuid);
      }
    }
    const prefix = usedIds.has(`lvm/${vg.name}`) ? `lvm/${vg.uuid}` : `lvm/${vg.name}`;
    if (prefix !== `lvm/${vg.name}`) result.warnings.push(`two volume groups are named ${vg.name}; the second is listed under its UUID ${vg.uuid}`);
    usedIds.add(prefix);
    const snapshotStores = new Set(vg.lvs.flatMap((lv) => lv.segments.flatMap((s) => (s.cow ? [s.cow] : []))));
    let index = 0;
    for (const lv of vg.lvs) {
      if (!lv.visible) continue;
      index++;
      const id = `${prefix}/${lv.name}`;
      try {
        checkSupported(vg, lv, snapshotStores);
        for (const seg of lv.segments) {
          for (const st of seg.stripes) {
            if (!pvDisks.has(st.pv)) {
              const pv = vg.pvs.get(st.pv);
              throw new MissingPhysicalVolumeError(vg.name, lv.name, st.pv, pv?.uuid ?? '', pv?.device ?? '');
            }
          }
        }
        result.volumes.push({ id, disk: null, volume: LogicalVolume.build(index, vg, lv, pvDisks) });
      } catch (e) {
        result.failed.push({ id, error: asDiskError(e) });
      }
    }
  }
  for (const pv of pvs) {
    if (claimed.has(pv.label.uuid)) continue;
    if (pv.error) result.failed.push({ id: pv.id, error: pv.error });
    else result.warnings.push(`${pv.id}: LVM physical volume ${pv.label.uuid} belongs to no volume group found on the VM's disks`);
  }
}

function checkSupported(vg: VolumeGroup, lv: VgLv, snapshotStores: Set<string>): void {
  const what = `logical volume ${vg.name}/${lv.name}`;
  if (snapshotStores.has(lv.name)) throw new UnsupportedFileSystemError('lvm2', `${what} is a snapshot; LVM snapshots are not supported yet`);
  for (const seg of lv.segments) {
    if (seg.type === 'striped') continue;
    const kind = segmentKind(seg.type);
    throw new UnsupportedFileSystemError('lvm2', `${what} uses segment type "${seg.type}"${kind ? ` (${kind})` : ''}, which is not supported yet`);
  }
}

/** What an unsupported segment type is for, in words an admin knows. */
function segmentKind(type: string): string {
  if (type.startsWith('thin')) return 'thin provisioning';
  if (type.startsWith('raid')) return 'RAID';
  if (type === 'mirror') return 'mirroring';
  if (type.startsWith('cache') || type === 'writecache') return 'caching';
  if (type.startsWith('vdo')) return 'VDO';
  return '';
}
