import { randomUUID } from 'node:crypto';
import {
  HostEntity,
  RestorePointEntity,
  VmEntity,
  type RepositoryEntity,
  type RestorePointDisk,
  type SecretBox,
} from '@vmkeep/persistence';
import type { Manifest, Repository } from '@vmkeep/repository';
import type { EntityManager } from 'typeorm';

/** What attaching a repository added to the database. */
export interface ImportReport {
  /** Restore point rows created. */
  imported: number;
  /** Points already in the database (an earlier import of the same repository). */
  skipped: number;
  /** VMs created as detached inventory entries (their host is not registered here). */
  vmsCreated: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Placeholder URL of a detached host: it is never connected to (`.invalid` never resolves). */
export const DETACHED_HOST_URL = 'https://detached.invalid';

interface VmIdentity {
  name: string;
  moref: string;
  instanceUuid: string | null;
  hostId: string | null;
  hostName: string;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);
const record = (v: unknown): Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** The VM a manifest belongs to, as the backup job records it (`meta.vm`, `meta.host`); image backups by name. */
export function vmIdentityOf(manifest: Manifest): VmIdentity {
  const vm = record(manifest.meta.vm);
  const host = record(manifest.meta.host);
  const name = text(vm.name) ?? text(manifest.meta.vm) ?? `point ${manifest.id}`;
  const hostId = text(host.id);
  return {
    name: name.slice(0, 255),
    moref: (text(vm.moref) ?? `detached:${name}`).slice(0, 64),
    instanceUuid: text(vm.instanceUuid)?.slice(0, 64) ?? null,
    hostId: hostId && UUID.test(hostId) ? hostId.toLowerCase() : null,
    hostName: text(host.name) ?? 'unknown host',
  };
}

/** The restore point disks of a manifest: the job's own records when present, else built from the manifest. */
function pointDisks(manifest: Manifest): RestorePointDisk[] {
  const recorded = manifest.meta.disks;
  if (Array.isArray(recorded) && recorded.length === manifest.disks.length &&
      recorded.every((d) => typeof record(d).key === 'string' && typeof record(d).deviceKey === 'number')) {
    return recorded as RestorePointDisk[];
  }
  return manifest.disks.map((d, i) => ({
    key: d.key,
    deviceKey: typeof d.meta.deviceKey === 'number' ? d.meta.deviceKey : i,
    label: text(d.meta.label) ?? d.key,
    capacityBytes: d.size,
    fileName: text(d.meta.fileName) ?? '',
  }));
}

/**
 * Creates a restore point row for every committed point of the repository that has none yet. A point's VM is
 * found by its host and moref, then by instance UUID; otherwise it is created: under its host when that host is
 * registered here, else under a "detached" host placeholder (id = the original host's id, never connected to),
 * marked missing so no policy tries to back it up. Runs inside the caller's transaction.
 */
export async function importPoints(
  manager: EntityManager,
  secrets: SecretBox,
  row: RepositoryEntity,
  repo: Repository,
): Promise<ImportReport> {
  const report: ImportReport = { imported: 0, skipped: 0, vmsCreated: 0 };
  const archived = new Set((await repo.listArchives()).map((a) => a.pointId));
  const hosts = manager.getRepository(HostEntity);
  const vms = manager.getRepository(VmEntity);
  const points = manager.getRepository(RestorePointEntity);

  const hostFor = async (id: VmIdentity): Promise<HostEntity> => {
    const known = id.hostId ? await hosts.findOneBy({ id: id.hostId }) : null;
    if (known) return known;
    const hostId = id.hostId ?? randomUUID();
    let name = `${id.hostName} (detached)`.slice(0, 119);
    if (await hosts.findOneBy({ name })) name = `${name} ${hostId.slice(0, 8)}`;
    return hosts.save(
      hosts.create({
        id: hostId,
        name,
        url: DETACHED_HOST_URL,
        username: '',
        passwordSealed: secrets.seal(''),
        lastError: `detached: restore points imported from repository "${row.name}"; register the real host to back its VMs up again`,
      }),
    );
  };

  const vmFor = async (id: VmIdentity): Promise<VmEntity> => {
    if (id.hostId) {
      const byMoref = await vms.findOneBy({ hostId: id.hostId, moref: id.moref });
      if (byMoref) return byMoref;
    }
    if (id.instanceUuid) {
      const byUuid = await vms.findOneBy({ instanceUuid: id.instanceUuid });
      if (byUuid) return byUuid;
    }
    const host = await hostFor(id);
    const existing = await vms.findOneBy({ hostId: host.id, moref: id.moref });
    if (existing) return existing;
    report.vmsCreated++;
    return vms.save(
      vms.create({ hostId: host.id, moref: id.moref, instanceUuid: id.instanceUuid, name: id.name, missing: true, lastSeenAt: null }),
    );
  };

  for (const manifest of await repo.listPoints()) {
    if (await points.existsBy({ repositoryId: row.id, repositoryPointId: manifest.id })) {
      report.skipped++;
      continue;
    }
    const vm = await vmFor(vmIdentityOf(manifest));
    const disks = pointDisks(manifest);
    const vmConfig = record(manifest.meta.vmConfig);
    await points.save(
      points.create({
        vmId: vm.id,
        jobId: null,
        repositoryPointId: manifest.id,
        repositoryPath: row.location,
        repositoryId: row.id,
        kind: archived.has(manifest.id) ? 'archive' : 'backup',
        quiesced: manifest.meta.quiesced === true,
        disks,
        sizeBytes: manifest.disks.reduce((n, d) => n + d.size, 0),
        storedBytes: 0,
        vmConfig: Object.keys(vmConfig).length ? vmConfig : null,
        createdAt: new Date(manifest.createdAt),
      }),
    );
    report.imported++;
  }
  return report;
}
