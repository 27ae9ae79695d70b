import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository as TypeOrmRepository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import type { Disk } from '@vmkeep/disk';
import { RestorePointEntity } from '@vmkeep/persistence';
import { Repository } from '@vmkeep/repository';
import type { RestorePointDto } from './restore-points.dto';

/** Restore points as recorded in the database, and their disks read back from the repository. */
@Injectable()
export class RestorePointsService {
  constructor(@InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>) {}

  async list(vmId?: string): Promise<RestorePointDto[]> {
    const rows = await this.points.find({ where: vmId ? { vmId } : {}, order: { createdAt: 'DESC', id: 'DESC' } });
    return rows.map(restorePointView);
  }

  async get(id: string): Promise<RestorePointDto> {
    return restorePointView(await this.entity(id));
  }

  async latestFor(vmId: string): Promise<RestorePointDto | null> {
    const row = await this.points.findOne({ where: { vmId }, order: { createdAt: 'DESC', id: 'DESC' } });
    return row ? restorePointView(row) : null;
  }

  /** Opens one disk of the point from the repository; the caller closes it. */
  async openDisk(id: string, key: string): Promise<{ disk: Disk; point: RestorePointDto; fileName: string }> {
    const point = await this.entity(id);
    const entry = point.disks.find((d) => d.key === key);
    if (!entry) throw new VmkeepError(`restore point ${id} has no disk ${JSON.stringify(key)}`, 'not_found');
    const repository = await Repository.open(point.repositoryPath);
    const disk = await repository.openDisk(point.repositoryPointId, key);
    return { disk, point: restorePointView(point), fileName: `${safeName(point.createdAt)}-${safeName(entry.label || key)}.raw` };
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

export function restorePointView(p: RestorePointEntity): RestorePointDto {
  return {
    id: p.id,
    vmId: p.vmId,
    jobId: p.jobId,
    kind: p.kind,
    quiesced: p.quiesced,
    disks: p.disks.map((d) => ({ key: d.key, deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, fileName: d.fileName })),
    sizeBytes: p.sizeBytes,
    storedBytes: p.storedBytes,
    createdAt: p.createdAt,
  };
}
