import type { PolicyAttributeCriterion, PolicySelection, PolicyTagCriterion } from '@vmkeep/persistence';

/** What selection looks at of a VM (inventory fields, plus the name of the registered host it came from). */
export interface SelectableVm {
  id: string;
  name: string;
  hostName: string | null;
  esxHost: string | null;
  cluster: string | null;
  datacenter: string | null;
  /** Inventory path of the VM's folder ("/DC0/vm/prod"). */
  folderPath?: string | null;
  /** Inventory path of the VM's resource pool ("/DC0/host/C0/Resources/prod"). */
  resourcePool?: string | null;
  tags?: PolicyTagCriterion[] | null;
  customAttributes?: Record<string, string> | null;
}

/** A selection with every list present (stored rows from before a criterion existed lack it). */
export type FullSelection = Required<PolicySelection>;

export const EMPTY_SELECTION: FullSelection = {
  vmIds: [],
  namePatterns: [],
  clusters: [],
  hosts: [],
  datacenters: [],
  folders: [],
  resourcePools: [],
  tags: [],
  customAttributes: [],
  excludeVmIds: [],
  excludePatterns: [],
};

/** The selection with missing criteria as empty lists. */
export function fullSelection(selection: Partial<PolicySelection>): FullSelection {
  const full = { ...EMPTY_SELECTION };
  for (const key of Object.keys(EMPTY_SELECTION) as (keyof FullSelection)[]) {
    const value = selection[key];
    if (Array.isArray(value)) (full as Record<string, unknown>)[key] = value;
  }
  return full;
}

/** A glob (`*` any run, `?` one character) as an anchored, case-insensitive regular expression. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** An inventory path in the one form paths are compared in: leading "/", no trailing or doubled "/". */
export function normalizeInventoryPath(path: string): string {
  return `/${path.split('/').filter(Boolean).join('/')}`;
}

const lower = (s: string) => s.toLowerCase();
const same = (a: string | null | undefined, list: string[]) => !!a && list.some((b) => lower(b) === lower(a));

/** The path itself or a path below it (whole segments: "/DC0/vm/prod" does not cover "/DC0/vm/production"). */
function underPath(path: string | null | undefined, prefix: string): boolean {
  if (!path) return false;
  const p = lower(normalizeInventoryPath(path));
  const q = lower(normalizeInventoryPath(prefix));
  return q === '/' || p === q || p.startsWith(`${q}/`);
}

/** A pool criterion: a path (has "/") covers the pool and its child pools; a bare name matches the pool's name. */
function poolMatches(pool: string | null | undefined, criterion: string): boolean {
  if (!pool) return false;
  if (criterion.includes('/')) return underPath(pool, criterion);
  const name = pool.split('/').filter(Boolean).pop() ?? '';
  return lower(name.replace(/%2f/gi, '/').replace(/%25/g, '%')) === lower(criterion);
}

function tagMatches(tags: PolicyTagCriterion[] | null | undefined, t: PolicyTagCriterion): boolean {
  return (tags ?? []).some((x) => lower(x.category) === lower(t.category) && lower(x.name) === lower(t.name));
}

function attributeMatches(attributes: Record<string, string> | null | undefined, a: PolicyAttributeCriterion): boolean {
  const entry = Object.entries(attributes ?? {}).find(([name]) => lower(name) === lower(a.name));
  return entry !== undefined && globToRegExp(a.value).test(entry[1]);
}

/** Why the selection picks the VM (e.g. "name web-*"), or undefined when it does not (or excludes it). */
export function selectionReason(stored: PolicySelection, vm: SelectableVm): string | undefined {
  const selection = fullSelection(stored);
  if (selection.excludeVmIds.includes(vm.id)) return undefined;
  if (selection.excludePatterns.some((p) => globToRegExp(p).test(vm.name))) return undefined;
  if (selection.vmIds.includes(vm.id)) return 'explicit';
  const pattern = selection.namePatterns.find((p) => globToRegExp(p).test(vm.name));
  if (pattern !== undefined) return `name ${pattern}`;
  if (same(vm.cluster, selection.clusters)) return `cluster ${vm.cluster}`;
  if (same(vm.esxHost, selection.hosts)) return `host ${vm.esxHost}`;
  if (same(vm.hostName, selection.hosts)) return `host ${vm.hostName}`;
  if (same(vm.datacenter, selection.datacenters)) return `datacenter ${vm.datacenter}`;
  const folder = selection.folders.find((f) => underPath(vm.folderPath, f));
  if (folder !== undefined) return `folder ${normalizeInventoryPath(folder)}`;
  const pool = selection.resourcePools.find((p) => poolMatches(vm.resourcePool, p));
  if (pool !== undefined) return `resource pool ${pool}`;
  const tag = selection.tags.find((t) => tagMatches(vm.tags, t));
  if (tag !== undefined) return `tag ${tag.category}:${tag.name}`;
  const attribute = selection.customAttributes.find((a) => attributeMatches(vm.customAttributes, a));
  if (attribute !== undefined) return `attribute ${attribute.name}=${attribute.value}`;
  return undefined;
}

/** The VMs the selection picks, in the given order. */
export function selectVms<T extends SelectableVm>(selection: PolicySelection, vms: T[]): T[] {
  return vms.filter((vm) => selectionReason(selection, vm) !== undefined);
}
