import { CliError, type CliContext } from './context';
import { items } from './format';

/** The fields of API resources the CLI reads (the server may send more). */
export interface HostView {
  id: string;
  name: string;
  url: string;
  username: string;
  insecure?: boolean;
  thumbprint?: string | null;
  apiType?: string | null;
  apiVersion?: string | null;
  lastSyncAt?: string | null;
  lastError?: string | null;
}

export interface VmView {
  id: string;
  hostId: string;
  name: string;
  moref: string;
  powerState?: string | null;
  missing?: boolean;
  diskCount: number;
  /** Sum of the disk sizes. */
  capacityBytes: number;
}

export interface JobView {
  id: string;
  state: string;
  vmId?: string | null;
  progress: number;
  bytesDone: number;
  bytesTotal: number;
  speed: number;
  phase?: string | null;
  error?: string | null;
  restorePointId?: string | null;
  stats?: Record<string, number> | null;
}

export interface RestorePointView {
  id: string;
  vmId: string;
  /** Null once the VM's host was removed. */
  vmName: string | null;
  jobId?: string | null;
  createdAt: string;
  quiesced?: boolean;
  sizeBytes: number;
  storedBytes: number;
  disks: { key: string; deviceKey: number; label: string; capacityBytes: number }[];
}

type List<T> = T[] | { items: T[] };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function listHosts(ctx: CliContext): Promise<HostView[]> {
  return items(await ctx.client.get<List<HostView>>('/api/hosts'));
}

export async function listVms(ctx: CliContext, hostId?: string): Promise<VmView[]> {
  const query = hostId ? `?hostId=${encodeURIComponent(hostId)}` : '';
  return items(await ctx.client.get<List<VmView>>(`/api/vms${query}`));
}

export async function listPoints(ctx: CliContext, vmId?: string): Promise<RestorePointView[]> {
  const query = vmId ? `?vmId=${encodeURIComponent(vmId)}` : '';
  return items(await ctx.client.get<List<RestorePointView>>(`/api/restore-points${query}`));
}

/** A host by id or by name. */
export async function resolveHost(ctx: CliContext, ref: string): Promise<HostView> {
  const hosts = await listHosts(ctx);
  const found = hosts.find((h) => h.id === ref) ?? hosts.find((h) => h.name === ref);
  if (!found) throw new CliError(`no host named or with id "${ref}" (see: vmkeep host list)`);
  return found;
}

/** A VM by id or by name; a name found on several hosts must be given as an id. */
export async function resolveVm(ctx: CliContext, ref: string, hostId?: string): Promise<VmView> {
  const vms = await listVms(ctx, hostId);
  if (UUID.test(ref)) {
    const byId = vms.find((v) => v.id === ref);
    if (byId) return byId;
  }
  const named = vms.filter((v) => v.name === ref);
  if (named.length === 1) return named[0];
  if (named.length > 1) {
    throw new CliError(`${named.length} VMs are named "${ref}": give its id (${named.map((v) => v.id).join(', ')})`);
  }
  throw new CliError(`no VM named or with id "${ref}" (see: vmkeep vm list)`);
}
