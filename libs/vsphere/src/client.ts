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
import { moRef, moRefArg, refKey } from './values';

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
    await this.fetchAncestry(tree, [moRef(object.props.get('runtime.host')), moRef(object.props.get('parent'))]);
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

  /** Ends other sessions of this host by key (SessionManager.TerminateSession); an admin tool, used by tests. */
  async terminateSessions(keys: string[]): Promise<void> {
    await this.invoke('TerminateSession', { _this: moRefArg(this.connection.serviceContent.sessionManager), sessionId: keys });
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
