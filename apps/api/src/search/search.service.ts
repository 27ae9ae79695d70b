import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { VmkeepError } from '@vmkeep/contracts';
import { FileIndexError, FileIndexStore, searchPoints } from '@vmkeep/file-index';
import { RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { In, type Repository as TypeOrmRepository } from 'typeorm';
import type { FileSearchHitDto, FileSearchQueryDto, FileSearchResultDto } from './search.dto';

/** File search over the guest file index that backups write next to the repository's chunks. */
@Injectable()
export class SearchService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>,
    @InjectRepository(VmEntity) private readonly vms: TypeOrmRepository<VmEntity>,
  ) {}

  async searchFiles(query: FileSearchQueryDto): Promise<FileSearchResultDto> {
    const rows = await this.points.find({
      where: { repositoryPath: this.config.repositoryPath, ...(query.vm ? { vmId: query.vm } : {}) },
      // Repository point ids sort by creation time to the millisecond; createdAt alone ties within a second.
      order: { createdAt: 'ASC', repositoryPointId: 'ASC' },
      select: { id: true, vmId: true, repositoryPointId: true, createdAt: true },
    });
    if (query.vm && !(await this.vms.exists({ where: { id: query.vm } })) && rows.length === 0) {
      throw new VmkeepError(`VM ${query.vm} does not exist`, 'not_found');
    }
    const store = FileIndexStore.forRepositoryFolder(this.config.repositoryPath);
    const limit = query.limit ?? 1000;
    const byVm = new Map<string, RestorePointEntity[]>();
    for (const row of rows) byVm.set(row.vmId, [...(byVm.get(row.vmId) ?? []), row]);
    const names = new Map(
      (await this.vms.find({ where: { id: In([...byVm.keys()]) }, select: { id: true, name: true } })).map((v) => [v.id, v.name]),
    );

    const result: FileSearchResultDto = { hits: [], truncated: false, pointsSearched: rows.length, unindexedPoints: [] };
    for (const [vmId, vmPoints] of byVm) {
      const byRepoId = new Map(vmPoints.map((p) => [p.repositoryPointId, p]));
      const found = await this.search(store, vmPoints.map((p) => p.repositoryPointId), query, limit - result.hits.length + 1);
      result.unindexedPoints.push(...found.unindexedPoints.map((id) => byRepoId.get(id)!.id));
      for (const hit of found.hits) {
        if (result.hits.length >= limit) {
          result.truncated = true;
          break;
        }
        result.hits.push(toDto(hit, vmId, names.get(vmId) ?? null, byRepoId));
      }
      if (found.truncated) result.truncated = true;
      if (result.truncated) break;
    }
    return result;
  }

  private async search(store: FileIndexStore, pointIds: string[], query: FileSearchQueryDto, limit: number) {
    try {
      return await searchPoints(store, pointIds, query.q, { ignoreCase: query.ignoreCase ?? true, type: query.type, limit });
    } catch (err) {
      if (err instanceof FileIndexError && err.code === 'BAD_PATTERN') throw new VmkeepError(err.message, 'invalid_argument');
      throw err;
    }
  }
}

function toDto(
  hit: Awaited<ReturnType<typeof searchPoints>>['hits'][number],
  vmId: string,
  vmName: string | null,
  byRepoId: Map<string, RestorePointEntity>,
): FileSearchHitDto {
  return {
    vmId,
    vmName,
    volume: hit.volume,
    path: hit.path,
    versions: hit.versions.map((v) => ({
      type: v.type,
      size: v.size,
      mtime: new Date(v.mtimeMs).toISOString(),
      points: v.points.map((id) => byRepoId.get(id)!).map((p) => ({ id: p.id, createdAt: p.createdAt })),
    })),
  };
}
