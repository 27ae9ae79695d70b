import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, In, Not, Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { HostEntity, JobEntity, SecretBox, VmDiskEntity, VmEntity } from '@vmkeep/persistence';
import type { AboutInfo, ConnectOptions, VmInfo, VmTag, VsphereSession } from '@vmkeep/vsphere';
import { describeHostError, INVENTORY_ERROR_CODES, notFound } from './errors';
import { VSPHERE_CLIENT, type VsphereClient } from './vsphere-client';

/** What an admin gives to register a host. */
export interface HostInput {
  name: string;
  url: string;
  username: string;
  password: string;
  insecure?: boolean;
  thumbprint?: string | null;
}

/** A host as the API shows it: never the password. */
export interface HostView {
  id: string;
  name: string;
  url: string;
  username: string;
  insecure: boolean;
  thumbprint: string | null;
  apiType: string | null;
  apiVersion: string | null;
  lastSyncAt: Date | null;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SyncResult {
  hostId: string;
  vms: number;
  disks: number;
  added: number;
  updated: number;
  /** VMs known before and not found by this sync (now marked missing). */
  missing: number;
  syncedAt: Date;
}

export interface TestResult {
  apiType: string;
  apiVersion: string;
  fullName: string;
}

/** Connection parameters for a test of a host that is not (or not yet) saved. */
export type ConnectionParams = Omit<HostInput, 'name'>;

/** Registered vCenter/ESXi hosts: credentials (sealed at rest), connection tests and inventory sync. */
@Injectable()
export class HostsService {
  constructor(
    @InjectRepository(HostEntity) private readonly hosts: Repository<HostEntity>,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    private readonly dataSource: DataSource,
    private readonly secrets: SecretBox,
    @Inject(VSPHERE_CLIENT) private readonly vsphere: VsphereClient,
  ) {}

  async list(): Promise<HostView[]> {
    return (await this.hosts.find({ order: { name: 'ASC' } })).map(toView);
  }

  async get(id: string): Promise<HostView> {
    return toView(await this.entity(id));
  }

  async create(input: HostInput): Promise<HostView> {
    await this.assertNameFree(input.name);
    const host = this.hosts.create({
      name: input.name,
      url: normalizeUrl(input.url),
      username: input.username,
      passwordSealed: this.secrets.seal(input.password),
      insecure: input.insecure ?? false,
      thumbprint: input.thumbprint ?? null,
      apiType: null,
      apiVersion: null,
      lastSyncAt: null,
      lastError: null,
    });
    return toView(await this.hosts.save(host));
  }

  /** Changes the given fields; the password only when one is given. */
  async update(id: string, patch: Partial<HostInput>): Promise<HostView> {
    const host = await this.entity(id);
    if (patch.name !== undefined && patch.name !== host.name) await this.assertNameFree(patch.name);
    if (patch.name !== undefined) host.name = patch.name;
    if (patch.url !== undefined) host.url = normalizeUrl(patch.url);
    if (patch.username !== undefined) host.username = patch.username;
    if (patch.password !== undefined) host.passwordSealed = this.secrets.seal(patch.password);
    if (patch.insecure !== undefined) host.insecure = patch.insecure;
    if (patch.thumbprint !== undefined) host.thumbprint = patch.thumbprint;
    return toView(await this.hosts.save(host));
  }

  /** Deletes the host and its VM records; refused while one of its VMs has a queued or running job. */
  async delete(id: string): Promise<HostView> {
    const host = await this.entity(id);
    const vmIds = (await this.vms.find({ where: { hostId: id }, select: { id: true } })).map((v) => v.id);
    if (vmIds.length) {
      const active = await this.jobs.count({ where: { vmId: In(vmIds), state: In(['queued', 'running']) } });
      if (active) {
        throw new VmkeepError(`host ${host.name} has ${active} queued or running job(s); cancel them first`, INVENTORY_ERROR_CODES.conflict);
      }
    }
    await this.hosts.remove(host);
    return toView({ ...host, id });
  }

  /** Logged-in session for a saved host (caller logs out). */
  async sessionFor(hostId: string): Promise<VsphereSession> {
    const host = await this.entity(hostId);
    return this.connect(this.connectOptions(host), host.name);
  }

  /** Logs in to a saved host (by id) or to the given parameters and returns what the host says it is. */
  async test(target: string | ConnectionParams): Promise<TestResult> {
    const host = typeof target === 'string' ? await this.entity(target) : undefined;
    const options = host ? this.connectOptions(host) : toConnectOptions(target as ConnectionParams);
    const session = await this.connect(options, host?.name ?? options.url);
    try {
      if (host) await this.hosts.update(host.id, aboutColumns(session.about));
      return { apiType: session.about.apiType, apiVersion: session.about.apiVersion, fullName: session.about.fullName };
    } finally {
      await logoutQuietly(session);
    }
  }

  /** SHA-256 thumbprint of the certificate presented at url, for the admin to compare and pin. */
  async fetchThumbprint(url: string): Promise<string> {
    try {
      return await this.vsphere.fetchThumbprint(normalizeUrl(url));
    } catch (err) {
      throw describeHostError(err, url);
    }
  }

  /**
   * Reads the host's inventory and upserts VMs (by moref) and their disks (by device key). VMs no longer found
   * are marked missing, never deleted: restore points refer to them. The outcome is stored on the host.
   */
  async sync(hostId: string): Promise<SyncResult> {
    const host = await this.entity(hostId);
    let session: VsphereSession | undefined;
    try {
      session = await this.connect(this.connectOptions(host), host.name);
      const inventory = await session.inventory().catch((err: unknown) => {
        throw describeHostError(err, host.name);
      });
      const tags = await readTags(session).catch((err: unknown) => {
        throw describeHostError(err, host.name);
      });
      const now = new Date();
      const result = await this.dataSource.transaction((em) =>
        upsertInventory(em.getRepository(VmEntity), em.getRepository(VmDiskEntity), host.id, inventory.vms, tags, now),
      );
      await this.hosts.update(host.id, { ...aboutColumns(inventory.about), lastSyncAt: now, lastError: null });
      return { hostId: host.id, ...result, syncedAt: now };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await this.hosts.update(host.id, { lastError: message.slice(0, 4000) });
      throw err;
    } finally {
      if (session) await logoutQuietly(session);
    }
  }

  private async connect(options: ConnectOptions, label: string): Promise<VsphereSession> {
    try {
      return await this.vsphere.connect(options);
    } catch (err) {
      throw describeHostError(err, label);
    }
  }

  private connectOptions(host: HostEntity): ConnectOptions {
    return {
      url: host.url,
      username: host.username,
      password: this.secrets.open(host.passwordSealed),
      insecure: host.insecure,
      thumbprint: host.thumbprint,
    };
  }

  private async entity(id: string): Promise<HostEntity> {
    const host = await this.hosts.findOneBy({ id });
    if (!host) throw notFound('host', id);
    return host;
  }

  private async assertNameFree(name: string): Promise<void> {
    if (await this.hosts.existsBy({ name })) {
      throw new VmkeepError(`a host named ${JSON.stringify(name)} already exists`, INVENTORY_ERROR_CODES.conflict);
    }
  }
}

async function upsertInventory(
  vmRepo: Repository<VmEntity>,
  diskRepo: Repository<VmDiskEntity>,
  hostId: string,
  found: VmInfo[],
  tags: Map<string, VmTag[]> | undefined,
  now: Date,
): Promise<Omit<SyncResult, 'hostId' | 'syncedAt'>> {
  const existing = new Map((await vmRepo.find({ where: { hostId } })).map((v) => [v.moref, v]));
  let added = 0;
  let updated = 0;
  let disks = 0;
  const seen = new Set<string>();
  for (const info of found) {
    const moref = info.ref.value;
    seen.add(moref);
    const vm = existing.get(moref) ?? vmRepo.create({ hostId, moref });
    if (existing.has(moref)) updated++;
    else added++;
    Object.assign(vm, {
      instanceUuid: info.instanceUuid ?? null,
      name: info.name,
      powerState: info.powerState ?? null,
      toolsStatus: info.toolsRunningStatus ?? info.toolsStatus ?? null,
      guestId: info.guestId ?? null,
      datacenter: info.datacenter ?? null,
      cluster: info.cluster ?? null,
      esxHost: info.host ?? null,
      folderPath: info.folderPath ?? null,
      resourcePool: info.resourcePool ?? null,
      tags: tags ? (tags.get(moref) ?? []) : null,
      customAttributes: info.customAttributes ?? null,
      missing: false,
      lastSeenAt: now,
    });
    const saved = await vmRepo.save(vm);
    disks += await upsertDisks(diskRepo, saved.id, info);
  }
  const gone = [...existing.values()].filter((v) => !seen.has(v.moref) && !v.missing);
  if (gone.length) await vmRepo.update({ id: In(gone.map((v) => v.id)) }, { missing: true });
  return { vms: found.length, disks, added, updated, missing: gone.length };
}

async function upsertDisks(diskRepo: Repository<VmDiskEntity>, vmId: string, info: VmInfo): Promise<number> {
  const existing = new Map((await diskRepo.find({ where: { vmId } })).map((d) => [d.deviceKey, d]));
  for (const d of info.disks) {
    const disk = existing.get(d.key) ?? diskRepo.create({ vmId, deviceKey: d.key });
    Object.assign(disk, {
      label: d.label,
      capacityBytes: d.capacityBytes,
      fileName: d.fileName,
      datastore: d.datastore ?? null,
      diskMode: d.diskMode ?? null,
    });
    await diskRepo.save(disk);
  }
  // Disk rows mirror the VM's current hardware; restore points keep their own copy of the disk list.
  const keys = info.disks.map((d) => d.key);
  await diskRepo.delete(keys.length ? { vmId, deviceKey: Not(In(keys)) } : { vmId });
  return info.disks.length;
}

/** Every VM's vSphere tags, or undefined when the host has no tagging service (ESXi, or a session without it). */
async function readTags(session: VsphereSession): Promise<Map<string, VmTag[]> | undefined> {
  if (!session.vmTags || session.about.apiType === 'HostAgent') return undefined;
  return session.vmTags();
}

function aboutColumns(about: AboutInfo): Pick<HostEntity, 'apiType' | 'apiVersion'> {
  const apiType = about.apiType === 'VirtualCenter' ? 'vcenter' : about.apiType === 'HostAgent' ? 'esxi' : about.apiType;
  return { apiType: apiType.slice(0, 16), apiVersion: about.apiVersion.slice(0, 32) };
}

function toConnectOptions(p: ConnectionParams): ConnectOptions {
  return { url: normalizeUrl(p.url), username: p.username, password: p.password, insecure: p.insecure ?? false, thumbprint: p.thumbprint ?? null };
}

/** Drops a trailing slash so equal hosts compare equal; the client appends /sdk itself. */
function normalizeUrl(url: string): string {
  return url.trim().replace(/\/+$/, '');
}

async function logoutQuietly(session: VsphereSession): Promise<void> {
  try {
    await session.logout();
  } catch {
    // The session ends on the host by itself; nothing to do.
  }
}

export function toView(h: HostEntity): HostView {
  return {
    id: h.id,
    name: h.name,
    url: h.url,
    username: h.username,
    insecure: h.insecure,
    thumbprint: h.thumbprint,
    apiType: h.apiType,
    apiVersion: h.apiVersion,
    lastSyncAt: h.lastSyncAt,
    lastError: h.lastError,
    createdAt: h.createdAt,
    updatedAt: h.updatedAt,
  };
}
