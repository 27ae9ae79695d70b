import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { compileMatcher, FileIndexError, FileIndexStore, searchPoints, type FileHit, type MatchOptions } from '@vmkeep/file-index';
import { RepositoryEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { openPointRepository } from '@vmkeep/repositories';
import { CONFIG_FILE, RepositoryNotFoundError } from '@vmkeep/repository';
import { In, type Repository as TypeOrmRepository } from 'typeorm';
import type {
  FileSearchHitDto,
  FileSearchQueryDto,
  FileSearchResultDto,
  FileVersionDto,
  UnavailableRepositoryDto,
} from './search.dto';
import { unavailableReason } from './unavailable-reason';

type PointRow = Pick<RestorePointEntity, 'id' | 'vmId' | 'repositoryPointId' | 'repositoryId' | 'repositoryPath' | 'createdAt'>;

/** A VM's hit being merged across repositories: versions hold positions in the VM's oldest-first point list. */
interface MergedHit {
  volume: string;
  path: string;
  versions: { type: FileHit['versions'][number]['type']; size: number; mtimeMs: number; points: number[] }[];
}

/**
 * File search over the guest file index that backups write next to each repository's chunks. A VM's points may
 * lie in several repositories (policies and backup requests choose one): each repository's index is searched
 * with its own keys and the hits are merged, so a path lists its versions across all of them.
 */
@Injectable()
export class SearchService {
  private readonly log = new Logger(SearchService.name);

  constructor(
    @InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>,
    @InjectRepository(VmEntity) private readonly vms: TypeOrmRepository<VmEntity>,
    @InjectRepository(RepositoryEntity) private readonly repositories: TypeOrmRepository<RepositoryEntity>,
  ) {}

  async searchFiles(query: FileSearchQueryDto): Promise<FileSearchResultDto> {
    const rows: PointRow[] = await this.points.find({
      where: query.vm ? { vmId: query.vm } : {},
      // Repository point ids sort by creation time to the millisecond; createdAt alone ties within a second.
      order: { createdAt: 'ASC', repositoryPointId: 'ASC' },
      select: { id: true, vmId: true, repositoryPointId: true, repositoryId: true, repositoryPath: true, createdAt: true },
    });
    if (query.vm && rows.length === 0 && !(await this.vms.exists({ where: { id: query.vm } }))) {
      throw new VmkeepError(`VM ${query.vm} does not exist`, 'not_found');
    }
    const limit = query.limit ?? 1000;
    const match = { ignoreCase: query.ignoreCase ?? true, type: query.type };
    checkPattern(query.q, match);
    const byVm = groupBy(rows, (p) => p.vmId);
    const names = new Map(
      (await this.vms.find({ where: { id: In([...byVm.keys()]) }, select: { id: true, name: true } })).map((v) => [v.id, v.name]),
    );
    const stores = new Map<string, Promise<FileIndexStore>>();
    const unavailable = new Map<string, UnavailableRepositoryDto>();

    const result: FileSearchResultDto = { hits: [], truncated: false, pointsSearched: 0, unindexedPoints: [], unavailableRepositories: [] };
    for (const [vmId, vmPoints] of byVm) {
      const budget = limit - result.hits.length;
      const merged = new Map<string, MergedHit>();
      const order = new Map(vmPoints.map((p, i) => [p, i]));
      for (const group of groupBy(vmPoints, repositoryKey).values()) {
        const key = repositoryKey(group[0]);
        const skipped = unavailable.get(key);
        if (skipped) {
          skipped.points += group.length;
          continue;
        }
        let found;
        try {
          const store = await this.storeFor(stores, group[0]);
          // The group alone having more paths than the budget means the merged result has too.
          // With no budget left, one path found is enough to say the result is truncated.
          found = await searchPoints(store, group.map((p) => p.repositoryPointId), query.q, { ...match, limit: Math.max(1, budget) });
        } catch (err) {
          unavailable.set(key, { ...(await this.unavailable(group[0], err)), points: group.length });
          continue;
        }
        if (found.truncated) result.truncated = true;
        const position = new Map(group.map((p) => [p.repositoryPointId, order.get(p)!]));
        result.unindexedPoints.push(...found.unindexedPoints.map((id) => vmPoints[position.get(id)!].id));
        for (const hit of found.hits) {
          if (!merge(merged, hit, position, budget)) result.truncated = true;
        }
      }
      const hits = [...merged.values()].sort((a, b) => compare(a.volume, b.volume) || compare(a.path, b.path));
      result.hits.push(...hits.map((hit) => toDto(hit, vmId, names.get(vmId) ?? null, vmPoints)));
      if (result.truncated) break;
    }
    result.unavailableRepositories = [...unavailable.values()];
    result.pointsSearched = rows.length - result.unavailableRepositories.reduce((n, r) => n + r.points, 0);
    return result;
  }

  /**
   * One index store per repository per search, opened with the repository's passphrase (sealed indexes). A
   * repository the process opened earlier is checked to be still there (its config object), so a folder moved or
   * removed since is reported as unavailable rather than as points without an index.
   */
  private storeFor(stores: Map<string, Promise<FileIndexStore>>, point: PointRow): Promise<FileIndexStore> {
    const key = repositoryKey(point);
    let store = stores.get(key);
    if (!store) {
      store = openPointRepository(point).then(async (repo) => {
        if (!(await repo.storage.stat(CONFIG_FILE))) throw new RepositoryNotFoundError(repo.storage.description);
        return FileIndexStore.forRepository(repo);
      });
      stores.set(key, store);
    }
    return store;
  }

  /** The report entry of a repository that could not be searched (the reason holds no secret); logged as a warning. */
  private async unavailable(point: PointRow, err: unknown): Promise<Omit<UnavailableRepositoryDto, 'points'>> {
    const row = point.repositoryId
      ? await this.repositories.findOne({ where: { id: point.repositoryId }, select: { id: true, name: true, location: true } })
      : null;
    const entry = {
      id: point.repositoryId ?? null,
      name: row?.name ?? null,
      location: row?.location ?? point.repositoryPath,
      reason: unavailableReason(err),
    };
    this.log.warn(`file search skipped repository ${entry.name ?? entry.location}: ${entry.reason}`);
    return entry;
  }
}

/** A bad pattern is the caller's mistake whichever repositories can be read: refused before any is opened. */
function checkPattern(pattern: string, opts: MatchOptions): void {
  try {
    compileMatcher(pattern, opts);
  } catch (err) {
    if (err instanceof FileIndexError && err.code === 'BAD_PATTERN') throw new VmkeepError(err.message, 'invalid_argument');
    throw err;
  }
}

/** Points are grouped by the repository that holds them (older rows without an id by their recorded folder). */
function repositoryKey(point: PointRow): string {
  return point.repositoryId ? `id:${point.repositoryId}` : `path:${point.repositoryPath}`;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/**
 * Adds one repository's hit to the VM's merged hits (same volume and path = same hit, same type, size and mtime =
 * same version). Returns false when it is a new path and `limit` paths are held already.
 */
function merge(merged: Map<string, MergedHit>, hit: FileHit, position: Map<string, number>, limit: number): boolean {
  const key = `${hit.volume}\0${hit.path}`;
  let target = merged.get(key);
  if (!target) {
    if (merged.size >= limit) return false;
    target = { volume: hit.volume, path: hit.path, versions: [] };
    merged.set(key, target);
  }
  for (const v of hit.versions) {
    const points = v.points.map((id) => position.get(id)!);
    const same = target.versions.find((t) => t.type === v.type && t.size === v.size && t.mtimeMs === v.mtimeMs);
    if (same) same.points.push(...points);
    else target.versions.push({ type: v.type, size: v.size, mtimeMs: v.mtimeMs, points });
  }
  return true;
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function toDto(hit: MergedHit, vmId: string, vmName: string | null, vmPoints: PointRow[]): FileSearchHitDto {
  const versions = hit.versions.map((v) => ({ ...v, points: [...new Set(v.points)].sort((a, b) => a - b) }));
  // Versions in the order they first appear, points oldest first — as one repository's search orders them.
  versions.sort((a, b) => a.points[0] - b.points[0]);
  return {
    vmId,
    vmName,
    volume: hit.volume,
    path: hit.path,
    versions: versions.map(
      (v): FileVersionDto => ({
        type: v.type,
        size: v.size,
        mtime: new Date(v.mtimeMs).toISOString(),
        points: v.points.map((i) => ({ id: vmPoints[i].id, createdAt: vmPoints[i].createdAt })),
      }),
    ),
  };
}
