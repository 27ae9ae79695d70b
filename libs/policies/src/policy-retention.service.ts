import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository as Rows } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { RestorePointEntity, type PolicyRetention } from '@vmkeep/persistence';
import { openPointRepository } from '@vmkeep/repositories';
import { ArchiveLockedError, planPrune, PointNotFoundError } from '@vmkeep/repository';

export interface VmPruneResult {
  removed: string[];
  kept: number;
  /** Points the plan removes that the repository refused (archived meanwhile, already gone), with the reason. */
  skipped: { id: string; reason: string }[];
}

/**
 * Retention of one VM's restore points after a successful policy run. The repository's planner (`planPrune`, the
 * rules of `Repository.prune`) is applied to this VM's points only, separately in each repository holding some
 * (opened with its passphrase through the repository registry). Archives are never touched: archived rows are
 * not even considered, points with an archive record are kept as protected, and `deletePoint` refuses a locked
 * archive anyway.
 */
@Injectable()
export class PolicyRetentionService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RestorePointEntity) private readonly points: Rows<RestorePointEntity>,
  ) {}

  async pruneVm(vmId: string, retention: PolicyRetention, timeZone: string, now = new Date()): Promise<VmPruneResult> {
    const rows = await this.points.find({ where: { vmId, kind: 'backup' } });
    const result: VmPruneResult = { removed: [], kept: 0, skipped: [] };
    // Every repository holds its own line of the VM's points: the rules apply within each one.
    const byRepository = new Map<string, RestorePointEntity[]>();
    for (const row of rows) {
      const key = row.repositoryId ?? row.repositoryPath;
      byRepository.set(key, [...(byRepository.get(key) ?? []), row]);
    }
    for (const group of byRepository.values()) {
      const repo = await openPointRepository(group[0]);
      const archived = new Set((await repo.listArchives()).map((a) => a.pointId));
      const plan = planPrune(
        group.map((r) => ({
          id: r.repositoryPointId,
          createdAt: r.createdAt,
          protectedReason: archived.has(r.repositoryPointId) ? 'archived' : undefined,
        })),
        { ...retention, timeZone },
        now,
      );
      result.kept += plan.keep.length;
      const removedRows: string[] = [];
      for (const { id } of plan.remove) {
        try {
          await repo.deletePoint(id);
        } catch (err) {
          if (!(err instanceof ArchiveLockedError || err instanceof PointNotFoundError)) throw err;
          result.skipped.push({ id, reason: err.message });
          continue;
        }
        result.removed.push(id);
        removedRows.push(...group.filter((r) => r.repositoryPointId === id).map((r) => r.id));
      }
      if (removedRows.length > 0) await this.points.delete({ id: In(removedRows) });
    }
    return result;
  }
}
