/**
 * Building the Inventory (and single VMs) from property-collector results. Pure functions over ObjectProps,
 * plus the property paths to ask for.
 */
import { parseCustomAttributes } from './custom-fields';
import { parseDisks, parseSnapshots } from './devices';
import type { ObjectProps } from './property-collector';
import type { AboutInfo, Inventory, MoRef, VmInfo } from './types';
import { bool, field, int, moRef, refKey, text, type SoapValue } from './values';

export const VM_PATHS = [
  'name',
  'parent',
  'config.uuid',
  'config.instanceUuid',
  'config.guestId',
  'config.hardware.device',
  'config.changeTrackingEnabled',
  'capability.changeTrackingSupported',
  'runtime.powerState',
  'runtime.host',
  'guest.toolsStatus',
  'guest.toolsRunningStatus',
  'snapshot',
  'resourcePool',
  'customValue',
  'availableField',
];

const NAME_PARENT = ['name', 'parent'];

/** Everything inventory() asks a ContainerView for, per type. */
export const INVENTORY_PATHS: Record<string, string[]> = {
  Folder: NAME_PARENT,
  Datacenter: NAME_PARENT,
  ComputeResource: NAME_PARENT,
  ClusterComputeResource: NAME_PARENT,
  HostSystem: NAME_PARENT,
  ResourcePool: NAME_PARENT,
  Datastore: [...NAME_PARENT, 'summary.capacity', 'summary.freeSpace'],
  VirtualMachine: VM_PATHS,
};

export function parseAbout(value: SoapValue): AboutInfo {
  const about: AboutInfo = {
    apiType: text(field(value, 'apiType')) ?? '',
    apiVersion: text(field(value, 'apiVersion')) ?? '',
    fullName: text(field(value, 'fullName')) ?? '',
  };
  const instanceUuid = text(field(value, 'instanceUuid'));
  if (instanceUuid) about.instanceUuid = instanceUuid;
  return about;
}

interface Entity {
  ref: MoRef;
  name: string;
  parent?: MoRef;
}

/** Names and parents of managed entities, to walk up the tree (host → cluster → datacenter → folders). */
export class EntityTree {
  private readonly entities = new Map<string, Entity>();

  constructor(
    private readonly rootFolder: MoRef,
    objects: ObjectProps[] = [],
  ) {
    this.add(objects);
  }

  add(objects: ObjectProps[]): void {
    for (const object of objects) {
      const name = text(object.props.get('name'));
      if (name === undefined) continue;
      const parent = moRef(object.props.get('parent'));
      this.entities.set(refKey(object.ref), { ref: object.ref, name, ...(parent ? { parent } : {}) });
    }
  }

  get(ref: MoRef | undefined): Entity | undefined {
    return ref ? this.entities.get(refKey(ref)) : undefined;
  }

  /** Parents of `ref` that are not yet known (to fetch them before resolving). */
  unknownAncestor(ref: MoRef | undefined): MoRef | undefined {
    let current = ref;
    for (let depth = 0; current && depth < 64; depth++) {
      if (refKey(current) === refKey(this.rootFolder)) return undefined;
      const entity = this.get(current);
      if (!entity) return current;
      current = entity.parent;
    }
    return undefined;
  }

  /** The nearest ancestor (or the entity itself) of the given type. */
  ancestor(ref: MoRef | undefined, type: string): Entity | undefined {
    let current = ref;
    for (let depth = 0; current && depth < 64; depth++) {
      const entity = this.get(current);
      if (!entity) return undefined;
      if (current.type === type) return entity;
      current = entity.parent;
    }
    return undefined;
  }

  /** Inventory path of an entity below the root folder: "Folder/Sub/DC0". */
  path(ref: MoRef): string {
    const names: string[] = [];
    let current: MoRef | undefined = ref;
    for (let depth = 0; current && depth < 64; depth++) {
      if (refKey(current) === refKey(this.rootFolder)) break;
      const entity = this.get(current);
      if (!entity) break;
      names.unshift(entity.name.replace(/%/g, '%25').replace(/\//g, '%2f'));
      current = entity.parent;
    }
    return names.join('/');
  }
}

/** "/DC0/vm/prod" for an entity whose ancestry the tree knows up to the root folder, else undefined. */
function inventoryPath(tree: EntityTree, ref: MoRef | undefined): string | undefined {
  if (!ref || !tree.get(ref) || tree.unknownAncestor(ref)) return undefined;
  return `/${tree.path(ref)}`;
}

/** A VmInfo from a VM's properties; host, cluster and datacenter are resolved through the tree. */
export function vmFromProps(object: ObjectProps, tree: EntityTree, datastoreNames?: Map<string, string>): VmInfo {
  const props = object.props;
  const parent = moRef(props.get('parent'));
  const hostRef = moRef(props.get('runtime.host'));
  const host = tree.get(hostRef);
  const cluster = tree.ancestor(hostRef, 'ClusterComputeResource');
  const datacenter = tree.ancestor(hostRef, 'Datacenter') ?? tree.ancestor(moRef(props.get('parent')), 'Datacenter');
  const vm: VmInfo = {
    ref: object.ref,
    name: text(props.get('name')) ?? object.ref.value,
    datacenter: datacenter?.name ?? '',
    datacenterPath: datacenter ? tree.path(datacenter.ref) : '',
    disks: parseDisks(props.get('config.hardware.device'), datastoreNames),
    snapshots: parseSnapshots(props.get('snapshot')),
  };
  const optional: [keyof VmInfo, string | undefined][] = [
    ['uuid', text(props.get('config.uuid'))],
    ['instanceUuid', text(props.get('config.instanceUuid'))],
    ['guestId', text(props.get('config.guestId'))],
    ['powerState', text(props.get('runtime.powerState'))],
    ['toolsStatus', text(props.get('guest.toolsStatus'))],
    ['toolsRunningStatus', text(props.get('guest.toolsRunningStatus'))],
    ['host', host?.name],
    ['cluster', cluster?.name],
    ['folderPath', inventoryPath(tree, parent?.type === 'Folder' ? parent : undefined)],
    ['resourcePool', inventoryPath(tree, moRef(props.get('resourcePool')))],
  ];
  for (const [key, value] of optional) if (value !== undefined) (vm as unknown as Record<string, unknown>)[key] = value;
  const cbtEnabled = bool(props.get('config.changeTrackingEnabled'));
  const cbtSupported = bool(props.get('capability.changeTrackingSupported'));
  if (cbtEnabled !== undefined) vm.changeTrackingEnabled = cbtEnabled;
  if (cbtSupported !== undefined) vm.changeTrackingSupported = cbtSupported;
  if (props.has('customValue') || props.has('availableField')) {
    vm.customAttributes = parseCustomAttributes(props.get('customValue'), props.get('availableField'));
  }
  return vm;
}

/** The whole inventory from one ContainerView retrieval (INVENTORY_PATHS). */
export function buildInventory(objects: ObjectProps[], about: AboutInfo, rootFolder: MoRef): Inventory {
  const tree = new EntityTree(rootFolder, objects);
  const byType = (type: string) => {
    const seen = new Set<string>();
    return objects.filter((o) => o.ref.type === type && !seen.has(refKey(o.ref)) && seen.add(refKey(o.ref)));
  };
  const dcName = (ref: MoRef) => tree.ancestor(ref, 'Datacenter')?.name ?? '';
  const nameOf = (o: ObjectProps) => text(o.props.get('name')) ?? o.ref.value;

  const datastores = byType('Datastore').map((o) => {
    const entry: Inventory['datastores'][number] = { ref: o.ref, name: nameOf(o), datacenter: dcName(o.ref) };
    const capacity = int(o.props.get('summary.capacity'));
    const freeSpace = int(o.props.get('summary.freeSpace'));
    if (capacity !== undefined) entry.capacity = capacity;
    if (freeSpace !== undefined) entry.freeSpace = freeSpace;
    return entry;
  });
  const datastoreNames = new Map(datastores.map((d) => [refKey(d.ref), d.name]));

  return {
    about,
    datacenters: byType('Datacenter').map((o) => ({ ref: o.ref, name: nameOf(o), path: tree.path(o.ref) })),
    clusters: byType('ClusterComputeResource').map((o) => ({ ref: o.ref, name: nameOf(o), datacenter: dcName(o.ref) })),
    hosts: byType('HostSystem').map((o) => {
      const host: Inventory['hosts'][number] = { ref: o.ref, name: nameOf(o), datacenter: dcName(o.ref) };
      const cluster = tree.ancestor(o.ref, 'ClusterComputeResource');
      if (cluster) host.cluster = cluster.name;
      return host;
    }),
    datastores,
    vms: byType('VirtualMachine').map((o) => vmFromProps(o, tree, datastoreNames)),
  };
}
