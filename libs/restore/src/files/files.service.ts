import { Injectable, OnApplicationShutdown, Optional } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository as TypeOrmRepository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { RestorePointEntity } from '@vmkeep/persistence';
import { openPointRepository, RepositoryResolver } from '@vmkeep/repositories';
import { BrowseSessions } from './sessions';
import type { BrowseRepositoryOpening } from './thread-protocol';
import { ThreadedFileBrowser } from './threaded-browser';

/** Browse sessions (one worker thread each) open at once; see README "Threads" for the memory per worker. */
export const MAX_BROWSE_SESSIONS = 8;

/**
 * File-level browsing of restore points (by database id) for the API: one shared, briefly cached browser per
 * point, its file systems parsed on a worker thread of its own (`ThreadedFileBrowser`), never on the API's
 * event loop. At most MAX_BROWSE_SESSIONS are open; a request for another point waits for a free one.
 */
@Injectable()
export class FileBrowseService implements OnApplicationShutdown {
  private readonly sessions: BrowseSessions<ThreadedFileBrowser>;

  constructor(
    @InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>,
    @Optional() private readonly repositories?: RepositoryResolver,
  ) {
    this.sessions = new BrowseSessions({ open: (id) => this.open(id), maxSessions: MAX_BROWSE_SESSIONS });
  }

  /** Runs `work` with the browser of restore point `pointId`. */
  use<T>(pointId: string, work: (browser: ThreadedFileBrowser) => Promise<T>): Promise<T> {
    return this.sessions.use(pointId, work);
  }

  /** The point's VM id (for per-VM audit records). */
  async vmIdOf(pointId: string): Promise<string> {
    return (await this.entity(pointId)).vmId;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.sessions.shutdown();
  }

  private async entity(pointId: string): Promise<RestorePointEntity> {
    const point = await this.points.findOneBy({ id: pointId });
    if (!point) throw new VmkeepError(`restore point ${pointId} not found`, 'not_found');
    return point;
  }

  private async open(pointId: string): Promise<ThreadedFileBrowser> {
    const point = await this.entity(pointId);
    const diskKeys = [...point.disks].sort((a, b) => a.deviceKey - b.deviceKey).map((d) => d.key);
    return ThreadedFileBrowser.open(
      { repository: await this.workerOpening(point), pointId: point.repositoryPointId, diskKeys },
      { label: `restore point ${point.id}` },
    );
  }

  /**
   * How the worker opens the point's repository: its location and S3 settings, and for an encrypted one the keys
   * this process already unwrapped (no second passphrase KDF run; the passphrase itself stays here).
   */
  private async workerOpening(point: RestorePointEntity): Promise<BrowseRepositoryOpening> {
    const repository = await openPointRepository(point);
    const target = point.repositoryId && this.repositories ? await this.repositories.forBackup(point.repositoryId) : undefined;
    const unlockedKeys = repository.unlockedKeys();
    const s3 = target?.runtime?.s3;
    return {
      location: target?.location ?? point.repositoryPath,
      runtime: { ...(unlockedKeys ? { unlockedKeys } : {}), ...(s3 ? { s3 } : {}) },
    };
  }
}
