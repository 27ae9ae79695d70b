/**
 * Full VM restore to vSphere: rebuild a backed-up VM as a new VM, or put the backed-up disks back into the
 * original VM (only when asked explicitly). Disks travel as descriptor + flat extent through the datastore
 * HTTP interface; whatever was created is removed again when the restore fails or is cancelled.
 */
import type { Disk } from '@vmkeep/disk';
import {
  ADDABLE_CONTROLLERS,
  controllerDevice,
  diskDevice,
  nicDevice,
  type DeviceChange,
  type Inventory,
  type MoRef,
  type PlacementTargets,
  type VimSession,
  type VmConfig,
} from '@vmkeep/vsphere';
import { uploadDisk, type DiskUpload } from './disk-upload';
import { VmRestoreError } from './errors';

export interface VmRestoreOptions {
  /** "new" (default): a new VM; "overwrite": the original VM's disks are replaced (it is powered off first). */
  mode?: 'new' | 'overwrite';
  /** Name of the new VM (default: the original's name + "-restored"). */
  name?: string;
  /** Host, cluster (compute resource) or resource pool name to place the new VM on. */
  host?: string;
  cluster?: string;
  resourcePool?: string;
  /** VM folder name (default: the datacenter's VM folder). */
  folder?: string;
  /** Datastore for every disk (default: where each disk was). */
  datastore?: string;
  /** Datastore per disk, by backed-up device key. */
  diskDatastores?: Record<string, string>;
  /** Source network name → target network name. Unmapped networks keep their name. */
  networkMap?: Record<string, string>;
  /** Thin provisioned disks (default: as the original). */
  thin?: boolean;
  powerOn?: boolean;
  /** The VM to overwrite (mode "overwrite"): its managed object id. */
  originalVmId?: string;
}

/** A backed-up disk: its device key in the VM configuration and a way to read it. */
export interface RestoreDiskSource {
  deviceKey: number;
  open(): Promise<Disk>;
}

export interface VmRestoreProgress {
  bytesDone: number;
  bytesTotal: number;
  phase: string;
}

export interface VmRestoreContext {
  onProgress?: (progress: VmRestoreProgress) => void;
  signal?: AbortSignal;
  /** Notes for the job log (what was cleaned up, what could not be). */
  log?: (message: string) => void;
}

export interface VmRestoreResult {
  vmId: string;
  name: string;
  /** "[ds] path" of every uploaded descriptor, in disk order. */
  disks: string[];
}

const VM_NAME_MAX = 80;

function checkName(name: string): void {
  if (!name.trim() || name.length > VM_NAME_MAX || /[/\\[\]%"]/.test(name) || name.startsWith('.')) {
    throw new VmRestoreError(`"${name}" cannot be a VM name (1–${VM_NAME_MAX} characters, no / \\ [ ] % ")`, 'invalid');
  }
}

function adapterFor(config: VmConfig, controllerKey: number): DiskUpload['adapterType'] {
  const type = config.controllers.find((c) => c.key === controllerKey)?.type;
  if (type === 'VirtualIDEController') return 'ide';
  if (type === 'VirtualBusLogicController') return 'buslogic';
  return 'lsilogic';
}

interface Plan {
  datacenter: { ref: MoRef; path: string };
  folder: MoRef;
  pool: MoRef;
  host?: MoRef;
  networks: Map<string, MoRef>;
  diskDatastores: Map<number, { name: string; ref: MoRef }>;
}

/** Resolves names to managed objects and checks space and collisions before any data moves. */
function plan(config: VmConfig, name: string, options: VmRestoreOptions, inventory: Inventory, targets: PlacementTargets, checkCollision: boolean): Plan {
  const byName = <T extends { name: string }>(list: T[], wanted: string, what: string): T => {
    const found = list.find((item) => item.name === wanted);
    if (!found) throw new VmRestoreError(`no ${what} named "${wanted}" on the target host`, 'invalid');
    return found;
  };

  const diskDatastores = new Map<number, { name: string; ref: MoRef }>();
  const needed = new Map<string, number>();
  for (const disk of config.disks) {
    const dsName = options.diskDatastores?.[String(disk.key)] ?? options.datastore ?? disk.datastore;
    const ds = byName(inventory.datastores, dsName, 'datastore');
    diskDatastores.set(disk.key, { name: ds.name, ref: ds.ref });
    needed.set(ds.name, (needed.get(ds.name) ?? 0) + disk.capacityBytes);
  }
  for (const [dsName, bytes] of needed) {
    const free = inventory.datastores.find((d) => d.name === dsName)?.freeSpace;
    if (free !== undefined && free < bytes) {
      throw new VmRestoreError(`datastore "${dsName}" has ${free} bytes free; the restored disks need ${bytes}`, 'invalid');
    }
  }
  const firstDs = inventory.datastores.find((d) => d.name === [...needed.keys()][0]) ?? inventory.datastores[0];
  const dcName = firstDs?.datacenter ?? inventory.datacenters[0]?.name;
  const dcInventory = inventory.datacenters.find((d) => d.name === dcName);
  const dcTarget = targets.datacenters.find((d) => d.name === dcName);
  if (!dcInventory || !dcTarget?.vmFolder) throw new VmRestoreError(`datacenter "${dcName ?? ''}" not found on the target host`, 'invalid');

  if (checkCollision && inventory.vms.some((vm) => vm.name === name && vm.datacenter === dcName)) {
    throw new VmRestoreError(`a VM named "${name}" already exists in datacenter "${dcName}"`, 'conflict');
  }

  let pool: MoRef | undefined;
  let host: MoRef | undefined;
  if (options.resourcePool) pool = byName(targets.resourcePools, options.resourcePool, 'resource pool').ref;
  if (options.host) {
    const found = byName(targets.hosts, options.host, 'host');
    host = found.ref;
    pool ??= targets.computeResources.find((c) => c.hosts.some((h) => h.value === found.ref.value))?.resourcePool;
  }
  if (options.cluster) pool ??= byName(targets.computeResources, options.cluster, 'cluster').resourcePool;
  if (!pool) {
    const dcClusters = new Set(inventory.clusters.filter((c) => c.datacenter === dcName).map((c) => c.ref.value));
    const dcHosts = new Set(inventory.hosts.filter((h) => h.datacenter === dcName).map((h) => h.ref.value));
    pool = targets.computeResources.find((c) => dcClusters.has(c.ref.value) || c.hosts.some((h) => dcHosts.has(h.value)))?.resourcePool;
  }
  if (!pool) throw new VmRestoreError(`no resource pool to place the VM in datacenter "${dcName}"`, 'invalid');

  const folder = options.folder ? byName(targets.folders, options.folder, 'folder').ref : dcTarget.vmFolder;

  const networks = new Map<string, MoRef>();
  for (const nic of config.nics) {
    const wanted = options.networkMap?.[nic.network] ?? nic.network;
    networks.set(nic.network, byName(targets.networks, wanted, 'network').ref);
  }
  for (const source of Object.keys(options.networkMap ?? {})) {
    if (!config.nics.some((nic) => nic.network === source)) {
      throw new VmRestoreError(`the backed-up VM has no NIC on network "${source}" to map`, 'invalid');
    }
  }
  return { datacenter: { ref: dcTarget.ref, path: dcInventory.path }, folder, pool, host, networks, diskDatastores };
}

/** Runs the restore; on failure every file and VM it created is removed and the error is rethrown. */
export async function restoreVm(
  session: VimSession,
  config: VmConfig,
  sources: RestoreDiskSource[],
  options: VmRestoreOptions,
  context: VmRestoreContext = {},
): Promise<VmRestoreResult> {
  const backedUp = config.disks.filter((d) => sources.some((s) => s.deviceKey === d.key));
  if (!backedUp.length) throw new VmRestoreError('the restore point holds no disk of this VM configuration', 'invalid');
  const restoreConfig: VmConfig = { ...config, disks: backedUp };
  return options.mode === 'overwrite'
    ? overwriteOriginal(session, restoreConfig, sources, options, context)
    : restoreAsNew(session, restoreConfig, sources, options, context);
}

class Uploads {
  bytesDone = 0;
  constructor(
    readonly bytesTotal: number,
    private readonly context: VmRestoreContext,
  ) {}
  report(phase: string): void {
    this.context.onProgress?.({ bytesDone: this.bytesDone, bytesTotal: this.bytesTotal, phase });
  }
  counter(phase: string): (bytes: number) => void {
    return (bytes) => {
      this.bytesDone += bytes;
      this.report(phase);
    };
  }
}

async function withDisk<T>(source: RestoreDiskSource, use: (disk: Disk) => Promise<T>): Promise<T> {
  const disk = await source.open();
  try {
    return await use(disk);
  } finally {
    await disk.close?.();
  }
}

const CLEANUP_ATTEMPTS = 4;
const CLEANUP_PAUSE_MS = 500;

/** A cleanup step, retried with growing pauses (the failure may have been a short network outage); never throws. */
async function bestEffort(what: string, context: VmRestoreContext, action: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await action();
      context.log?.(`cleanup: ${what}`);
      return;
    } catch (error) {
      if (attempt >= CLEANUP_ATTEMPTS) {
        context.log?.(`cleanup: could not ${what}: ${error instanceof Error ? error.message : String(error)}`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, CLEANUP_PAUSE_MS * 2 ** (attempt - 1)));
    }
  }
}

async function restoreAsNew(session: VimSession, config: VmConfig, sources: RestoreDiskSource[], options: VmRestoreOptions, context: VmRestoreContext): Promise<VmRestoreResult> {
  const name = options.name ?? `${config.name}-restored`;
  checkName(name);
  const [inventory, targets] = await Promise.all([session.inventory(), session.placementTargets()]);
  const where = plan(config, name, options, inventory, targets, true);
  const uploads = new Uploads(config.disks.reduce((sum, d) => sum + d.capacityBytes, 0), context);
  const folders: { datastore: string; path: string }[] = [];
  let vm: MoRef | undefined;
  try {
    // The VM folder on each datastore used; an existing folder is a collision and stops the restore here.
    for (const dsName of new Set([...where.diskDatastores.values()].map((d) => d.name))) {
      const folder = `[${dsName}] ${name}`;
      await session.makeDirectory(folder, where.datacenter.ref).catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        throw /FileAlreadyExists|already exists/i.test(message)
          ? new VmRestoreError(`folder ${folder} already exists on the datastore`, 'conflict')
          : error;
      });
      folders.push({ datastore: dsName, path: folder });
    }

    const disks: string[] = [];
    for (const [index, disk] of config.disks.entries()) {
      const source = sources.find((s) => s.deviceKey === disk.key)!;
      const ds = where.diskDatastores.get(disk.key)!;
      const descriptorPath = `${name}/${name}_${index}.vmdk`;
      const phase = `uploading disk ${disk.key}`;
      uploads.report(phase);
      await withDisk(source, (data) => {
        if (data.size !== disk.capacityBytes) {
          throw new VmRestoreError(`disk ${disk.key}: the restore point holds ${data.size} bytes, the configuration says ${disk.capacityBytes}`, 'invalid');
        }
        const upload: DiskUpload = {
          datacenterPath: where.datacenter.path,
          datastore: ds.name,
          descriptorPath,
          thin: options.thin ?? disk.thin,
          adapterType: adapterFor(config, disk.controllerKey),
        };
        return uploadDisk(session, data, upload, uploads.counter(phase), context.signal);
      });
      disks.push(`[${ds.name}] ${descriptorPath}`);
    }

    context.signal?.throwIfAborted();
    uploads.report('creating the VM');
    const changes: DeviceChange[] = [];
    const controllerKeys = new Map<number, number>();
    let nextKey = -100;
    for (const controller of config.controllers) {
      if (!ADDABLE_CONTROLLERS.has(controller.type)) continue;
      const key = nextKey--;
      controllerKeys.set(controller.key, key);
      changes.push({ operation: 'add', device: controllerDevice(controller, key) });
    }
    for (const [index, disk] of config.disks.entries()) {
      const ds = where.diskDatastores.get(disk.key)!;
      changes.push({
        operation: 'add',
        device: diskDevice({
          key: nextKey--,
          controllerKey: controllerKeys.get(disk.controllerKey) ?? disk.controllerKey,
          unitNumber: disk.unitNumber,
          capacityBytes: disk.capacityBytes,
          fileName: disks[index],
          datastore: ds.ref,
          diskMode: disk.diskMode,
          thin: options.thin ?? disk.thin,
        }),
      });
    }
    for (const nic of config.nics) {
      changes.push({ operation: 'add', device: nicDevice(nic, nextKey--, where.networks.get(nic.network)!) });
    }
    const vmxDatastore = where.diskDatastores.get(config.disks[0].key)!.name;
    vm = await session.createVm(
      where.folder,
      {
        name,
        guestId: config.guestId,
        annotation: config.annotation,
        vmPathName: `[${vmxDatastore}] ${name}/${name}.vmx`,
        numCPUs: config.numCPUs,
        numCoresPerSocket: config.numCoresPerSocket,
        memoryMB: config.memoryMB,
        deviceChange: changes,
        firmware: config.firmware,
      },
      where.pool,
      where.host,
    );
    if (options.powerOn) {
      uploads.report('powering on');
      await session.powerOnVm(vm.value);
    }
    uploads.report('done');
    return { vmId: vm.value, name, disks };
  } catch (error) {
    if (vm) {
      const created = vm;
      await bestEffort(`delete VM ${created.value}`, context, async () => {
        await session.powerOffVm(created.value).catch(() => undefined);
        await session.destroyVm(created.value);
      });
    }
    for (const folder of folders.reverse()) {
      await bestEffort(`delete ${folder.path}`, context, () => session.deleteDatastoreFile(folder.path, where.datacenter.ref));
    }
    throw error;
  }
}

async function overwriteOriginal(session: VimSession, config: VmConfig, sources: RestoreDiskSource[], options: VmRestoreOptions, context: VmRestoreContext): Promise<VmRestoreResult> {
  if (!options.originalVmId) throw new VmRestoreError('overwriting the original VM needs its id', 'invalid');
  const vmId = options.originalVmId;
  const [current, info, inventory] = await Promise.all([session.vmConfig(vmId), session.getVm(vmId), session.inventory()]);
  const dc = inventory.datacenters.find((d) => d.name === info.datacenter);
  const targets = await session.placementTargets();
  const dcRef = targets.datacenters.find((d) => d.name === info.datacenter)?.ref;
  if (!dc || !dcRef) throw new VmRestoreError(`datacenter of VM ${vmId} not found`, 'invalid');

  const pairs = config.disks.map((disk) => {
    const target = current.disks.find((d) => d.key === disk.key);
    if (!target) throw new VmRestoreError(`VM ${current.name} has no disk ${disk.key} any more; restore it as a new VM instead`, 'invalid');
    if (target.capacityBytes < disk.capacityBytes) {
      throw new VmRestoreError(`disk ${disk.key} of VM ${current.name} is smaller than the backed-up disk`, 'invalid');
    }
    return { disk, target };
  });
  const uploads = new Uploads(config.disks.reduce((sum, d) => sum + d.capacityBytes, 0), context);
  if (info.powerState === 'poweredOn') {
    uploads.report('powering off');
    await session.powerOffVm(vmId);
  }
  // New files next to the old ones; the old disks are swapped out only once every upload succeeded.
  const stamp = new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14);
  const uploaded: { datastore: string; descriptorPath: string }[] = [];
  try {
    for (const { disk, target } of pairs) {
      const folder = target.fileName.replace(/^\[[^\]]+\]\s*/, '').split('/').slice(0, -1).join('/');
      const descriptorPath = `${folder ? `${folder}/` : ''}vmkeep-restore-${stamp}-${disk.key}.vmdk`;
      const phase = `uploading disk ${disk.key}`;
      const source = sources.find((s) => s.deviceKey === disk.key)!;
      uploads.report(phase);
      uploaded.push({ datastore: target.datastore, descriptorPath });
      await withDisk(source, (data) =>
        uploadDisk(
          session,
          data,
          { datacenterPath: dc.path, datastore: target.datastore, descriptorPath, thin: options.thin ?? target.thin, adapterType: adapterFor(current, target.controllerKey) },
          uploads.counter(phase),
          context.signal,
        ),
      );
    }
    context.signal?.throwIfAborted();
    uploads.report('replacing disks');
    const changes: DeviceChange[] = [];
    for (const [index, { target }] of pairs.entries()) {
      const file = `[${uploaded[index].datastore}] ${uploaded[index].descriptorPath}`;
      const device = { key: target.key, controllerKey: target.controllerKey, unitNumber: target.unitNumber, capacityBytes: target.capacityBytes, diskMode: target.diskMode };
      changes.push({ operation: 'remove', fileOperation: 'destroy', device: diskDevice({ ...device, fileName: target.fileName, thin: target.thin }) });
      changes.push({ operation: 'add', device: diskDevice({ ...device, fileName: file, thin: options.thin ?? target.thin }) });
    }
    await session.reconfigureVm(vmId, { deviceChange: changes });
  } catch (error) {
    for (const file of uploaded) {
      for (const path of [file.descriptorPath, file.descriptorPath.replace(/\.vmdk$/, '-flat.vmdk')]) {
        await bestEffort(`delete [${file.datastore}] ${path}`, context, () => session.deleteDatastoreFile(`[${file.datastore}] ${path}`, dcRef));
      }
    }
    throw error;
  }
  if (options.powerOn) {
    uploads.report('powering on');
    await session.powerOnVm(vmId);
  }
  uploads.report('done');
  return { vmId, name: current.name, disks: uploaded.map((u) => `[${u.datastore}] ${u.descriptorPath}`) };
}
