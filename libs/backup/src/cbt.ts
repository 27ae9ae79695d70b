/**
 * Changed block tracking in the backup job: whether a disk can be read incrementally against the VM's last
 * restore point, and the Disk wrapper that makes a full read skip unallocated areas. Pure: no database, no host.
 */
import type { Disk, Extent } from '@vmkeep/disk';
import type { RestorePointDisk } from '@vmkeep/persistence';
import type { VmDiskInfo } from '@vmkeep/vsphere';

/** The restore point an incremental builds on. */
export interface ParentPoint {
  /** restore_points row id. */
  id: string;
  /** Point id inside the repository. */
  repositoryPointId: string;
  disks: RestorePointDisk[];
}

export type DiskPlan =
  | { mode: 'incremental'; parent: ParentPoint; parentDisk: RestorePointDisk; changeId: string }
  | { mode: 'full'; reason: string; allocatedOnly: boolean };

/**
 * How to read `disk` (as the snapshot sees it): incremental against the parent's disk with the same device key,
 * or full, saying why. `previousRunIncomplete` names the later run of this VM that did not finish, if any.
 */
export function planDisk(disk: VmDiskInfo, parent: ParentPoint | undefined, previousRunIncomplete?: string): DiskPlan {
  if (disk.rdm === 'virtual') return { mode: 'full', reason: 'virtual-mode raw device mapping: always read whole', allocatedOnly: false };
  if (!disk.changeId) return { mode: 'full', reason: 'changed block tracking is not active on this disk yet', allocatedOnly: false };
  const full = (reason: string): DiskPlan => ({ mode: 'full', reason, allocatedOnly: true });
  if (!parent) return full('no earlier restore point of this VM');
  if (previousRunIncomplete) return full(`the previous run (${previousRunIncomplete}) did not complete`);
  const parentDisk = parent.disks.find((d) => d.deviceKey === disk.key);
  if (!parentDisk) return full(`the last restore point has no disk with device key ${disk.key} (new disk or key changed)`);
  if (!parentDisk.changeId) return full('the last restore point of this disk was taken without changed block tracking');
  if (parentDisk.capacityBytes !== disk.capacityBytes) {
    return full(`the disk was resized (${parentDisk.capacityBytes} → ${disk.capacityBytes} bytes)`);
  }
  if (parentDisk.fileName !== disk.fileName) return full(`the disk was re-created (${parentDisk.fileName} → ${disk.fileName})`);
  return { mode: 'incremental', parent, parentDisk, changeId: parentDisk.changeId };
}

/** Sum of the lengths of merged areas (areas may overlap when a host over-reports). */
export function areaBytes(areas: Extent[]): number {
  let total = 0;
  let end = -1;
  for (const a of [...areas].sort((x, y) => x.offset - y.offset)) {
    const start = Math.max(a.offset, end);
    const stop = a.offset + a.length;
    if (stop > start) total += stop - start;
    end = Math.max(end, stop);
  }
  return total;
}

/** A Disk that declares only the given areas as allocated: the repository reads nothing else (zeros there). */
export class AllocatedAreasDisk implements Disk {
  constructor(
    private readonly inner: Disk,
    private readonly areas: Extent[],
  ) {}

  get size(): number {
    return this.inner.size;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.inner.read(offset, length);
  }

  async extents(): Promise<Extent[]> {
    return this.areas.map((a) => ({ ...a }));
  }

  release(buffer: Buffer): void {
    this.inner.release?.(buffer);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
