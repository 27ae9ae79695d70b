import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository as TypeOrmRepository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import type { Disk } from '@vmkeep/disk';
import { RestorePointEntity } from '@vmkeep/persistence';
import { openPointRepository } from '@vmkeep/repositories';
import { FileBrowser } from './browser';
import { BrowseSessions } from './sessions';

/**
 * File-level browsing of restore points (by database id) for the API: one shared, briefly cached FileBrowser per
 * point. Parsing runs in this process (the readers are async and bounded); see README for the worker-thread note.
 */
@Injectable()
export class FileBrowseService implements OnApplicationShutdown {
  private readonly sessions: BrowseSessions;

  constructor(@InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>) {
    this.sessions = new BrowseSessions({ open: (id) => this.open(id) });
  }

  /** Runs `work` with the browser of restore point `pointId`. */
  use<T>(pointId: string, work: (browser: FileBrowser) => Promise<T>): Promise<T> {
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

  private async open(pointId: string): Promise<FileBrowser> {
    const point = await this.entity(pointId);
    const repository = await openPointRepository(point);
    const disks: { key: string; disk: Disk }[] = [];
    try {
      for (const entry of [...point.disks].sort((a, b) => a.deviceKey - b.deviceKey)) {
        disks.push({ key: entry.key, disk: await repository.openDisk(point.repositoryPointId, entry.key) });
      }
      return await FileBrowser.open(disks);
    } catch (err) {
      await Promise.allSettled(disks.map((d) => d.disk.close()));
      throw err;
    }
  }
}
