/**
 * connect(): a logged-in VsphereSession over node-soap. See README.md for the contract.
 */
import type { Disk } from '@vmkeep/disk';
import { parseDiskChangeInfo, type DiskChangeInfo } from './cbt';
import { VimConnection } from './connection';
import { openDatastoreDisk, type DatastoreDiskOptions } from './datastore-disk';
import { parseDisks } from './devices';
import { NotFoundError, VsphereError } from './errors';
import { buildInventory, EntityTree, INVENTORY_PATHS, parseAbout, VM_PATHS, vmFromProps } from './inventory';
import { containerViewSpec, objectsSpec, retrieveAll, type Invoke, type ObjectProps } from './property-collector';
import { waitForTask, type WaitOptions } from './tasks';
import type { AboutInfo, ConnectOptions, Inventory, MoRef, VmDiskInfo, VmInfo, VsphereSession } from './types';
import { arrayItems, moRef, moRefArg, refKey, text } from './values';
import { folderUrl } from './datastore-disk';
import { readVmTags, type VmTag } from './tags';
import type { PutBody } from './http';
import { GuestFiles, type GuestCredentials } from './guest-ops';
import { deviceChangeArgs, parseVmConfig, VM_CONFIG_PATHS, type DeviceChange, type VmConfig } from './vm-config';

/** Managed objects a VM can be created in or connected to (see VimSession.placementTargets). */
export interface PlacementTargets {
  datacenters: { ref: MoRef; name: string; vmFolder?: MoRef }[];
  computeResources: { ref: MoRef; name: string; resourcePool?: MoRef; hosts: MoRef[] }[];
  hosts: { ref: MoRef; name: string; parent?: MoRef }[];
  resourcePools: { ref: MoRef; name: string }[];
  folders: { ref: MoRef; name: string }[];
  networks: { ref: MoRef; name: string }[];
}

/** The VirtualMachineConfigSpec members VMKeep sends (CreateVM_Task, ReconfigVM_Task). */
export interface VmConfigSpec {
  name?: string;
  guestId?: string;
  annotation?: string;
  /** "[datastore]" or "[datastore] folder/name.vmx" */
  vmPathName?: string;
  numCPUs?: number;
  numCoresPerSocket?: number;
  memoryMB?: number;
  deviceChange?: DeviceChange[];
  firmware?: string;
}

function configSpecArg(spec: VmConfigSpec): Record<string, unknown> {
  const arg: Record<string, unknown> = {};
  // WSDL order matters: name, guestId, annotation, files, numCPUs, numCoresPerSocket, memoryMB, deviceChange, firmware.
  if (spec.name !== undefined) arg.name = spec.name;
  if (spec.guestId !== undefined) arg.guestId = spec.guestId;
  if (spec.annotation !== undefined) arg.annotation = spec.annotation;
  if (spec.vmPathName !== undefined) arg.files = { vmPathName: spec.vmPathName };
  if (spec.numCPUs !== undefined) arg.numCPUs = spec.numCPUs;
  if (spec.numCoresPerSocket !== undefined) arg.numCoresPerSocket = spec.numCoresPerSocket;
  if (spec.memoryMB !== undefined) arg.memoryMB = spec.memoryMB;
  if (spec.deviceChange?.length) arg.deviceChange = deviceChangeArgs(spec.deviceChange);
  if (spec.firmware !== undefined) arg.firmware = spec.firmware;
  return arg;
}

const PLACEMENT_PATHS: Record<string, string[]> = {
  Datacenter: ['name', 'vmFolder'],
  ComputeResource: ['name', 'resourcePool', 'host'],
  ClusterComputeResource: ['name', 'resourcePool', 'host'],
  HostSystem: ['name', 'parent'],
  ResourcePool: ['name'],
  Folder: ['name'],
  Network: ['name'],
};

/** ConnectOptions plus tuning knobs of this implementation. */
export interface VimConnectOptions extends ConnectOptions {
  /** Objects per RetrievePropertiesEx page (default 500). */
  pageSize?: number;
  /** Task waiting (timeout, poll interval). */
  task?: WaitOptions;
  /** Range read retries of openDisk. */
  disk?: DatastoreDiskOptions;
}

const DEFAULT_PAGE_SIZE = 500;

/** Connects and logs in. Throws AuthenticationError, ConnectionError, CertificateError or ConfigurationError. */
export async function connect(options: VimConnectOptions): Promise<VimSession> {
  const connection = await VimConnection.open(options);
  return new VimSession(connection, options);
}

export class VimSession implements VsphereSession {
  readonly about: AboutInfo;
  private readonly invoke: Invoke;

  constructor(
    private readonly connection: VimConnection,
    private readonly options: VimConnectOptions,
  ) {
    this.about = parseAbout(connection.serviceContent.about);
    this.invoke = (method, args) => connection.call(method, args);
  }

  /** The host's key of this session (SessionManager.TerminateSession takes it); changes on re-login. */
  get sessionKey(): string | undefined {
    return this.connection.sessionKey;
  }

  private get collector(): MoRef {
    return this.connection.serviceContent.propertyCollector;
  }

  private retrieve(specs: Parameters<typeof retrieveAll>[2]): Promise<ObjectProps[]> {
    return retrieveAll(this.invoke, this.collector, specs, this.options.pageSize ?? DEFAULT_PAGE_SIZE);
  }

  async inventory(): Promise<Inventory> {
    const content = this.connection.serviceContent;
    const view = moRef(
      await this.invoke('CreateContainerView', {
        _this: moRefArg(content.viewManager),
        container: moRefArg(content.rootFolder),
        type: Object.keys(INVENTORY_PATHS),
        recursive: true,
      }),
    );
    if (!view) throw new VsphereError(`${this.connection.host}: CreateContainerView returned no view`);
    try {
      const objects = await this.retrieve([containerViewSpec(view, INVENTORY_PATHS)]);
      return buildInventory(objects, this.about, content.rootFolder);
    } finally {
      await this.invoke('DestroyView', { _this: moRefArg(view) }).catch(() => undefined);
    }
  }

  async getVm(vmId: string): Promise<VmInfo> {
    const ref = { type: 'VirtualMachine', value: vmId };
    const notFound = () => new NotFoundError(`VM ${vmId} not found on ${this.connection.host}`);
    const [object] = await this.retrieve([objectsSpec('VirtualMachine', [ref], VM_PATHS)]).catch((error: unknown) => {
      throw error instanceof NotFoundError ? notFound() : error;
    });
    if (!object) throw notFound();
    const tree = new EntityTree(this.connection.serviceContent.rootFolder);
    const ancestry = ['runtime.host', 'parent', 'resourcePool'].map((p) => moRef(object.props.get(p)));
    await this.fetchAncestry(tree, ancestry);
    return vmFromProps(object, tree);
  }

  /** Loads names and parents from the given entities up to the root folder, a level per round trip. */
  private async fetchAncestry(tree: EntityTree, starts: (MoRef | undefined)[]): Promise<void> {
    for (let round = 0; round < 32; round++) {
      const unknown = new Map<string, MoRef>();
      for (const start of starts) {
        const missing = tree.unknownAncestor(start);
        if (missing) unknown.set(refKey(missing), missing);
      }
      if (!unknown.size) return;
      const byType = new Map<string, MoRef[]>();
      for (const ref of unknown.values()) byType.set(ref.type, [...(byType.get(ref.type) ?? []), ref]);
      const specs = [...byType].map(([type, refs]) => objectsSpec(type, refs, ['name', 'parent']));
      const objects = await this.retrieve(specs);
      if (!objects.length) return;
      tree.add(objects);
    }
  }

  async createSnapshot(vmId: string, name: string, description: string, quiesce: boolean): Promise<MoRef> {
    const task = moRef(
      await this.invoke('CreateSnapshot_Task', {
        _this: moRefArg({ type: 'VirtualMachine', value: vmId }),
        name,
        description,
        memory: false,
        quiesce,
      }),
    );
    if (!task) throw new VsphereError(`${this.connection.host}: CreateSnapshot_Task returned no task`);
    const result = moRef(await waitForTask(this.invoke, this.collector, task, `snapshot of VM ${vmId}`, this.options.task));
    if (!result) throw new VsphereError(`${this.connection.host}: snapshot task of VM ${vmId} returned no snapshot`);
    return result;
  }

  async removeSnapshot(snapshot: MoRef): Promise<void> {
    const task = moRef(
      await this.invoke('RemoveSnapshot_Task', { _this: moRefArg(snapshot), removeChildren: false, consolidate: true }),
    );
    if (!task) throw new VsphereError(`${this.connection.host}: RemoveSnapshot_Task returned no task`);
    await waitForTask(this.invoke, this.collector, task, `removal of snapshot ${snapshot.value}`, this.options.task);
  }

  async snapshotDisks(snapshot: MoRef): Promise<VmDiskInfo[]> {
    const [object] = await this.retrieve([objectsSpec(snapshot.type, [snapshot], ['config.hardware.device'])]);
    if (!object) throw new NotFoundError(`snapshot ${snapshot.value} not found on ${this.connection.host}`);
    return parseDisks(object.props.get('config.hardware.device'));
  }

  async setChangeTracking(vmId: string, enabled: boolean): Promise<void> {
    const task = moRef(
      await this.invoke('ReconfigVM_Task', {
        _this: moRefArg({ type: 'VirtualMachine', value: vmId }),
        spec: { changeTrackingEnabled: enabled },
      }),
    );
    if (!task) throw new VsphereError(`${this.connection.host}: ReconfigVM_Task returned no task`);
    const what = `${enabled ? 'enabling' : 'disabling'} changed block tracking of VM ${vmId}`;
    await waitForTask(this.invoke, this.collector, task, what, this.options.task);
  }

  async queryChangedDiskAreas(vmId: string, snapshot: MoRef, deviceKey: number, startOffset: number, changeId: string): Promise<DiskChangeInfo> {
    const value = await this.invoke('QueryChangedDiskAreas', {
      _this: moRefArg({ type: 'VirtualMachine', value: vmId }),
      snapshot: moRefArg(snapshot),
      deviceKey,
      startOffset,
      changeId,
    });
    return parseDiskChangeInfo(value, `${this.connection.host}: disk ${deviceKey} of VM ${vmId}`);
  }

  openDisk(datacenterPath: string, disk: VmDiskInfo): Promise<Disk> {
    return openDatastoreDisk(this.connection, datacenterPath, disk, this.options.disk);
  }

  /** The VM's configuration (guest OS, CPUs, memory, firmware, controllers, disks, NICs with network names). */
  async vmConfig(vmId: string): Promise<VmConfig> {
    const ref = { type: 'VirtualMachine', value: vmId };
    const [object] = await this.retrieve([objectsSpec('VirtualMachine', [ref], [...VM_CONFIG_PATHS, 'network'])]);
    if (!object) throw new NotFoundError(`VM ${vmId} not found on ${this.connection.host}`);
    const networks = arrayItems(object.props.get('network')).flatMap((value) => moRef(value) ?? []);
    const names = new Map<string, string>();
    if (networks.length) {
      const byType = new Map<string, MoRef[]>();
      for (const net of networks) byType.set(net.type, [...(byType.get(net.type) ?? []), net]);
      const objects = await this.retrieve([...byType].map(([type, refs]) => objectsSpec(type, refs, ['name'])));
      for (const o of objects) names.set(o.ref.value, text(o.props.get('name')) ?? o.ref.value);
    }
    return parseVmConfig(object.props, names);
  }

  /** Datacenters (with vmFolder), compute resources (with root pool and hosts), hosts, pools, folders and networks. */
  async placementTargets(): Promise<PlacementTargets> {
    const content = this.connection.serviceContent;
    const view = moRef(
      await this.invoke('CreateContainerView', {
        _this: moRefArg(content.viewManager),
        container: moRefArg(content.rootFolder),
        type: Object.keys(PLACEMENT_PATHS),
        recursive: true,
      }),
    );
    if (!view) throw new VsphereError(`${this.connection.host}: CreateContainerView returned no view`);
    let objects: ObjectProps[];
    try {
      objects = await this.retrieve([containerViewSpec(view, PLACEMENT_PATHS)]);
    } finally {
      await this.invoke('DestroyView', { _this: moRefArg(view) }).catch(() => undefined);
    }
    const seen = new Set<string>();
    const unique = objects.filter((o) => !seen.has(refKey(o.ref)) && seen.add(refKey(o.ref)));
    const of = (...types: string[]) => unique.filter((o) => types.includes(o.ref.type));
    const name = (o: ObjectProps) => text(o.props.get('name')) ?? o.ref.value;
    const ref = (o: ObjectProps, path: string) => moRef(o.props.get(path));
    return {
      datacenters: of('Datacenter').map((o) => ({ ref: o.ref, name: name(o), vmFolder: ref(o, 'vmFolder') })),
      computeResources: of('ComputeResource', 'ClusterComputeResource').map((o) => ({
        ref: o.ref,
        name: name(o),
        resourcePool: ref(o, 'resourcePool'),
        hosts: arrayItems(o.props.get('host')).flatMap((h) => moRef(h) ?? []),
      })),
      hosts: of('HostSystem').map((o) => ({ ref: o.ref, name: name(o), parent: ref(o, 'parent') })),
      resourcePools: of('ResourcePool').map((o) => ({ ref: o.ref, name: name(o) })),
      folders: of('Folder').map((o) => ({ ref: o.ref, name: name(o) })),
      networks: unique.filter((o) => !['Datacenter', 'ComputeResource', 'ClusterComputeResource', 'HostSystem', 'ResourcePool', 'Folder'].includes(o.ref.type)).map((o) => ({ ref: o.ref, name: name(o) })),
    };
  }

  private async runTask(method: string, args: Record<string, unknown>, what: string) {
    const task = moRef(await this.invoke(method, args));
    if (!task) throw new VsphereError(`${this.connection.host}: ${method} returned no task`);
    return waitForTask(this.invoke, this.collector, task, what, this.options.task);
  }

  /** CreateVM_Task in `folder` and `pool` (optionally on `host`); waits and returns the new VM. */
  async createVm(folder: MoRef, spec: VmConfigSpec, pool: MoRef, host?: MoRef): Promise<MoRef> {
    const args: Record<string, unknown> = { _this: moRefArg(folder), config: configSpecArg(spec), pool: moRefArg(pool) };
    if (host) args.host = moRefArg(host);
    const vm = moRef(await this.runTask('CreateVM_Task', args, `creation of VM ${spec.name ?? ''}`));
    if (!vm) throw new VsphereError(`${this.connection.host}: CreateVM_Task returned no VM`);
    return vm;
  }

  /** ReconfigVM_Task with the given spec (device changes, CPUs, memory...); waits for the task. */
  async reconfigureVm(vmId: string, spec: VmConfigSpec): Promise<void> {
    await this.runTask('ReconfigVM_Task', { _this: moRefArg({ type: 'VirtualMachine', value: vmId }), spec: configSpecArg(spec) }, `reconfiguration of VM ${vmId}`);
  }

  async powerOnVm(vmId: string): Promise<void> {
    await this.runTask('PowerOnVM_Task', { _this: moRefArg({ type: 'VirtualMachine', value: vmId }) }, `power-on of VM ${vmId}`);
  }

  async powerOffVm(vmId: string): Promise<void> {
    await this.runTask('PowerOffVM_Task', { _this: moRefArg({ type: 'VirtualMachine', value: vmId }) }, `power-off of VM ${vmId}`);
  }

  /** Destroy_Task: unregisters the VM and deletes its files. */
  async destroyVm(vmId: string): Promise<void> {
    await this.runTask('Destroy_Task', { _this: moRefArg({ type: 'VirtualMachine', value: vmId }) }, `deletion of VM ${vmId}`);
  }

  private get fileManager(): MoRef {
    const manager = this.connection.serviceContent.fileManager;
    if (!manager) throw new VsphereError(`${this.connection.host} offers no FileManager`);
    return manager;
  }

  /** FileManager.MakeDirectory("[ds] folder", datacenter, createParentDirectories). */
  async makeDirectory(datastorePath: string, datacenter?: MoRef): Promise<void> {
    await this.invoke('MakeDirectory', {
      _this: moRefArg(this.fileManager),
      name: datastorePath,
      ...(datacenter ? { datacenter: moRefArg(datacenter) } : {}),
      createParentDirectories: true,
    });
  }

  /** FileManager.DeleteDatastoreFile_Task("[ds] path") (a folder goes with its content); waits for the task. */
  async deleteDatastoreFile(datastorePath: string, datacenter?: MoRef): Promise<void> {
    const args = { _this: moRefArg(this.fileManager), name: datastorePath, ...(datacenter ? { datacenter: moRefArg(datacenter) } : {}) };
    await this.runTask('DeleteDatastoreFile_Task', args, `deletion of ${datastorePath}`);
  }

  /**
   * Uploads a file to "[datastore] path" through /folder (PUT with Content-Length). `body` is called for a
   * fresh stream (once more if the session had to be renewed). Throws VsphereError on a non-2xx answer.
   */
  async uploadFile(datacenterPath: string, datastore: string, path: string, body: () => PutBody, signal?: AbortSignal): Promise<void> {
    const response = await this.connection.put(folderUrl(path, datacenterPath, datastore), body, signal);
    if (response.status < 200 || response.status > 299) {
      throw new VsphereError(`upload of [${datastore}] ${path} to ${this.connection.host} failed: HTTP ${response.status}`);
    }
  }

  /** Ends other sessions of this host by key (SessionManager.TerminateSession); an admin tool, used by tests. */
  async terminateSessions(keys: string[]): Promise<void> {
    await this.invoke('TerminateSession', { _this: moRefArg(this.connection.serviceContent.sessionManager), sessionId: keys });
  }

  /** Guest file operations on a VM with these guest credentials (guest-ops.ts); no call is made yet. */
  guestFiles(vmId: string, credentials: GuestCredentials): GuestFiles {
    return new GuestFiles(this.connection, vmId, credentials, { insecure: this.options.insecure, thumbprint: this.options.thumbprint });
  }

  /** Every VM's vSphere tags through the vAPI tagging endpoints (tags.ts); undefined on a host without them. */
  vmTags(): Promise<Map<string, VmTag[]> | undefined> {
    const { origin, host, agent, timeoutMs } = this.connection;
    return readVmTags({ origin, host, agent, timeoutMs, username: this.options.username, password: this.options.password });
  }

  /** The host's clock (ServiceInstance.CurrentTime); a cheap keep-alive. */
  async currentTime(): Promise<Date> {
    const value = await this.invoke('CurrentTime', { _this: moRefArg({ type: 'ServiceInstance', value: 'ServiceInstance' }) });
    return value instanceof Date ? value : new Date(String(value));
  }

  logout(): Promise<void> {
    return this.connection.logout();
  }
}
