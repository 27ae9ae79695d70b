import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository as TypeOrmRepository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import type { Disk } from '@vmkeep/disk';
import { RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { openPointRepository } from '@vmkeep/repositories';
import type { RestorePointDto } from './restore-points.dto';

const NEWEST_FIRST = { createdAt: 'DESC', id: 'DESC' } as const;

/** Restore points as recorded in the database, and their disks read back from the repository. */
@Injectable()
export class RestorePointsService {
  constructor(
    @InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>,
    @InjectRepository(VmEntity) private readonly vms: TypeOrmRepository<VmEntity>,
  ) {}

  async list(vmId?: string): Promise<RestorePointDto[]> {
    return this.views(await this.points.find({ where: vmId ? { vmId } : {}, order: NEWEST_FIRST }));
  }

  async get(id: string): Promise<RestorePointDto> {
    const [view] = await this.views([await this.entity(id)]);
    return view;
  }

  async latestFor(vmId: string): Promise<RestorePointDto | null> {
    const row = await this.points.findOne({ where: { vmId }, order: NEWEST_FIRST });
    return row ? (await this.views([row]))[0] : null;
  }

  /**
   * Opens one disk of the point from the repository; the caller closes it. `baseName` (date and disk label) is
   * the download name without extension.
   */
  async openDisk(id: string, key: string): Promise<{ disk: Disk; fileName: string; baseName: string }> {
    const point = await this.entity(id);
    const entry = point.disks.find((d) => d.key === key);
    if (!entry) throw new VmkeepError(`restore point ${id} has no disk ${JSON.stringify(key)}`, 'not_found');
    const repository = await openPointRepository(point);
    const disk = await repository.openDisk(point.repositoryPointId, key);
    const baseName = `${safeName(point.createdAt)}-${safeName(entry.label || key)}`;
    return { disk, fileName: `${baseName}.raw`, baseName };
  }

  /**
   * Opens every disk of the point in device order, with what is known of its VM (name, guest id) for an OVA;
   * the caller closes the disks. `baseName` (VM name and date) is the download name without extension.
   */
  async openVm(id: string): Promise<{ vm: { name: string; guestId: string | null }; disks: Disk[]; baseName: string }> {
    const point = await this.entity(id);
    const row = await this.vms.findOne({ where: { id: point.vmId }, select: { id: true, name: true, guestId: true } });
    const vm = { name: row?.name ?? `vm-${point.vmId}`, guestId: row?.guestId ?? null };
    const repository = await openPointRepository(point);
    const disks: Disk[] = [];
    try {
      for (const entry of [...point.disks].sort((a, b) => a.deviceKey - b.deviceKey)) {
        disks.push(await repository.openDisk(point.repositoryPointId, entry.key));
      }
    } catch (err) {
      await Promise.allSettled(disks.map((d) => d.close()));
      throw err;
    }
    return { vm, disks, baseName: `${safeName(vm.name)}-${safeName(point.createdAt)}` };
  }

  /** API views of the rows, with the names of their VMs looked up in one query. */
  private async views(rows: RestorePointEntity[]): Promise<RestorePointDto[]> {
    const vmIds = [...new Set(rows.map((r) => r.vmId))];
    const vms = vmIds.length ? await this.vms.find({ where: { id: In(vmIds) }, select: { id: true, name: true } }) : [];
    const names = new Map(vms.map((v) => [v.id, v.name]));
    return rows.map((r) => restorePointView(r, names.get(r.vmId) ?? null));
  }

  private async entity(id: string): Promise<RestorePointEntity> {
    const row = await this.points.findOneBy({ id });
    if (!row) throw new VmkeepError(`restore point ${id} not found`, 'not_found');
    return row;
  }
}

function safeName(v: Date | string): string {
  const text = v instanceof Date ? v.toISOString().replace(/\.\d+Z$/, 'Z') : v;
  return text.replace(/[^A-Za-z0-9._-]+/g, '_');
}

function restorePointView(p: RestorePointEntity, vmName: string | null): RestorePointDto {
  return {
    id: p.id,
    vmId: p.vmId,
    vmName,
    jobId: p.jobId,
    repositoryId: p.repositoryId,
    kind: p.kind,
    quiesced: p.quiesced,
    quiesceNote: p.quiesceNote ?? null,
    disks: p.disks.map((d) => ({ key: d.key, deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, fileName: d.fileName })),
    sizeBytes: p.sizeBytes,
    storedBytes: p.storedBytes,
    createdAt: p.createdAt,
  };
}
