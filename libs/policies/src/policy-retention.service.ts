import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository as Rows } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { RestorePointEntity, type PolicyRetention } from '@vmkeep/persistence';
import { ArchiveLockedError, planPrune, PointNotFoundError, Repository } from '@vmkeep/repository';

export interface VmPruneResult {
  removed: string[];
  kept: number;
  /** Points the plan removes that the repository refused (archived meanwhile, already gone), with the reason. */
  skipped: { id: string; reason: string }[];
}

/**
 * Retention of one VM's restore points after a successful policy run. The appliance keeps every VM in one
 * repository, so the repository's planner (`planPrune`, the rules of `Repository.prune`) is applied to this VM's
 * points only. Archives are never touched: archived rows are not even considered, points with an archive record
 * are kept as protected, and `deletePoint` refuses a locked archive anyway.
 */
@Injectable()
export class PolicyRetentionService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RestorePointEntity) private readonly points: Rows<RestorePointEntity>,
  ) {}

  async pruneVm(vmId: string, retention: PolicyRetention, timeZone: string, now = new Date()): Promise<VmPruneResult> {
    const rows = await this.points.find({ where: { vmId, kind: 'backup' } });
    if (rows.length === 0) return { removed: [], kept: 0, skipped: [] };
    const repo = await Repository.open(this.config.repositoryPath);
    const archived = new Set((await repo.listArchives()).map((a) => a.pointId));
    const plan = planPrune(
      rows.map((r) => ({
        id: r.repositoryPointId,
        createdAt: r.createdAt,
        protectedReason: archived.has(r.repositoryPointId) ? 'archived' : undefined,
      })),
      { ...retention, timeZone },
      now,
    );
    const result: VmPruneResult = { removed: [], kept: plan.keep.length, skipped: [] };
    for (const { id } of plan.remove) {
      try {
        await repo.deletePoint(id);
      } catch (err) {
        if (!(err instanceof ArchiveLockedError || err instanceof PointNotFoundError)) throw err;
        result.skipped.push({ id, reason: err.message });
        continue;
      }
      result.removed.push(id);
    }
    if (result.removed.length > 0) await this.points.delete({ vmId, repositoryPointId: In(result.removed) });
    return result;
  }
}
