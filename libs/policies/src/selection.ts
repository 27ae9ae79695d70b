import type { PolicySelection } from '@vmkeep/persistence';

/** What selection looks at of a VM (inventory fields, plus the name of the registered host it came from). */
export interface SelectableVm {
  id: string;
  name: string;
  hostName: string | null;
  esxHost: string | null;
  cluster: string | null;
  datacenter: string | null;
}

export const EMPTY_SELECTION: PolicySelection = {
  vmIds: [],
  namePatterns: [],
  clusters: [],
  hosts: [],
  datacenters: [],
  excludeVmIds: [],
  excludePatterns: [],
};

/** A glob (`*` any run, `?` one character) as an anchored, case-insensitive regular expression. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

const same = (a: string | null, list: string[]) => a !== null && list.some((b) => b.toLowerCase() === a.toLowerCase());

/** Why the selection picks the VM (e.g. "name web-*"), or undefined when it does not (or excludes it). */
export function selectionReason(selection: PolicySelection, vm: SelectableVm): string | undefined {
  if (selection.excludeVmIds.includes(vm.id)) return undefined;
  if (selection.excludePatterns.some((p) => globToRegExp(p).test(vm.name))) return undefined;
  if (selection.vmIds.includes(vm.id)) return 'explicit';
  const pattern = selection.namePatterns.find((p) => globToRegExp(p).test(vm.name));
  if (pattern !== undefined) return `name ${pattern}`;
  if (same(vm.cluster, selection.clusters)) return `cluster ${vm.cluster}`;
  if (same(vm.esxHost, selection.hosts)) return `host ${vm.esxHost}`;
  if (same(vm.hostName, selection.hosts)) return `host ${vm.hostName}`;
  if (same(vm.datacenter, selection.datacenters)) return `datacenter ${vm.datacenter}`;
  return undefined;
}

/** The VMs the selection picks, in the given order. */
export function selectVms<T extends SelectableVm>(selection: PolicySelection, vms: T[]): T[] {
  return vms.filter((vm) => selectionReason(selection, vm) !== undefined);
}
