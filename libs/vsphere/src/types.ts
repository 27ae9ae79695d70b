import type { Disk } from '@vmkeep/disk';
import type { DiskChangeInfo } from './cbt';
import type { VmConfig } from './vm-config';
import type { VmTag } from './tags';
import type { GuestCredentials, GuestFiles } from './guest-ops';

/** How to reach a vCenter or ESXi host. */
export interface ConnectOptions {
  /** https://host[:port]; the client appends /sdk. */
  url: string;
  username: string;
  password: string;
  /** Accept any certificate. */
  insecure?: boolean;
  /** Pinned certificate fingerprint (SHA-256 or SHA-1, hex, colons optional). */
  thumbprint?: string | null;
  /** Per-request timeout in ms (default 60 s). */
  timeoutMs?: number;
}

/** A managed object reference. */
export interface MoRef {
  type: string;
  value: string;
}

export interface AboutInfo {
  apiType: 'VirtualCenter' | 'HostAgent' | string;
  apiVersion: string;
  fullName: string;
  instanceUuid?: string;
}

export interface VmDiskInfo {
  /** vSphere device key (e.g. 2000). */
  key: number;
  label: string;
  capacityBytes: number;
  /** "[datastore] folder/disk.vmdk" */
  fileName: string;
  datastore: string;
  diskMode?: string;
  changeId?: string;
  /** Disk excluded from snapshots (independent modes) or a physical RDM. */
  skipReason?: string;
  /** Set for a raw device mapping (virtual-mode RDMs are backed up, as full reads). */
  rdm?: 'virtual' | 'physical';
}

export interface VmInfo {
  ref: MoRef;
  name: string;
  instanceUuid?: string;
  uuid?: string;
  guestId?: string;
  powerState?: string;
  toolsStatus?: string;
  toolsRunningStatus?: string;
  datacenter: string;
  /** Inventory path of the datacenter, used as dcPath for /folder URLs. */
  datacenterPath: string;
  cluster?: string;
  host?: string;
  /** Inventory path of the VM's folder, "/DC0/vm/prod" (absent for a VM inside a vApp). */
  folderPath?: string;
  /** Inventory path of the VM's resource pool, "/DC0/host/DC0_C0/Resources/prod". */
  resourcePool?: string;
  /** Custom attributes (CustomFieldsManager fields) by name. */
  customAttributes?: Record<string, string>;
  disks: VmDiskInfo[];
  snapshots: { ref: MoRef; name: string; description?: string }[];
  /** config.changeTrackingEnabled (CBT switched on; active after the next stun, e.g. a snapshot). */
  changeTrackingEnabled?: boolean;
  /** capability.changeTrackingSupported (hardware version 7 or later on a host that has CBT). */
  changeTrackingSupported?: boolean;
}

export interface Inventory {
  about: AboutInfo;
  datacenters: { ref: MoRef; name: string; path: string }[];
  clusters: { ref: MoRef; name: string; datacenter: string }[];
  hosts: { ref: MoRef; name: string; datacenter: string; cluster?: string }[];
  datastores: { ref: MoRef; name: string; datacenter: string; capacity?: number; freeSpace?: number }[];
  vms: VmInfo[];
}

/**
 * A logged-in session with a vCenter or ESXi host. Obtained from `connect(options)` (client.ts); re-logs in by
 * itself when the host reports the session expired.
 */
export interface VsphereSession {
  readonly about: AboutInfo;
  /** Datacenters, clusters, hosts, datastores and VMs (with disks, power and tools state). Pages through the property collector. */
  inventory(): Promise<Inventory>;
  /** One VM by managed object id; throws NotFoundError when it no longer exists. */
  getVm(vmId: string): Promise<VmInfo>;
  /** CreateSnapshot_Task (memory=false) and waits for the task; returns the snapshot reference. */
  createSnapshot(vmId: string, name: string, description: string, quiesce: boolean): Promise<MoRef>;
  /** RemoveSnapshot_Task(removeChildren=false, consolidate=true) and waits for the task. */
  removeSnapshot(snapshot: MoRef): Promise<void>;
  /** Disks as the snapshot sees them (config.hardware.device of the snapshot). */
  snapshotDisks(snapshot: MoRef): Promise<VmDiskInfo[]>;
  /**
   * The disk's data through the datastore HTTP interface (/folder, Range requests, verified Content-Range).
   * Reads the .vmdk descriptor to find the flat extent. `datacenterPath` comes from VmInfo.
   */
  openDisk(datacenterPath: string, disk: VmDiskInfo): Promise<Disk>;
  /**
   * ReconfigVM_Task(spec.changeTrackingEnabled) and waits for the task. Optional: a session without it cannot
   * do changed block tracking. Turning CBT off and on again resets it (every earlier changeId becomes invalid).
   */
  setChangeTracking?(vmId: string, enabled: boolean): Promise<void>;
  /**
   * One QueryChangedDiskAreas call: the areas of disk `deviceKey` of `snapshot` changed since `changeId` ("*":
   * all allocated areas), for the part of the disk starting at `startOffset` the host chose to answer. A
   * rejected changeId is a FaultError (InvalidArgument / FileFault). Optional like setChangeTracking.
   */
  queryChangedDiskAreas?(vmId: string, snapshot: MoRef, deviceKey: number, startOffset: number, changeId: string): Promise<DiskChangeInfo>;
  /**
   * The VM's configuration as a restore rebuilds it (guest OS, CPUs, memory, firmware, controllers, disks, NICs
   * with network names). Optional: a session without it records restore points without configuration.
   */
  vmConfig?(vmId: string): Promise<VmConfig>;
  /**
   * Guest file operations (GuestFileManager) on a running VM with guest credentials. Optional: a session
   * without it cannot restore files into a guest.
   */
  guestFiles?(vmId: string, credentials: GuestCredentials): GuestFiles;
  /**
   * vSphere tags of every VM (vAPI tagging, tags.ts), by VM managed object id; undefined when the host has no
   * tagging service (ESXi). Optional: a session without it syncs no tags.
   */
  vmTags?(): Promise<Map<string, VmTag[]> | undefined>;
  logout(): Promise<void>;
}
