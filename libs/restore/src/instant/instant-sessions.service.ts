import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository as TypeOrmRepository } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { VmkeepError } from '@vmkeep/contracts';
import { RestorePointEntity } from '@vmkeep/persistence';
import { Repository } from '@vmkeep/repository';
import { InstantSessions, type CloseOptions, type CloseResult, type InstantSessionView, type StartOptions } from './instant-sessions';

/**
 * Instant restore for the API: sessions that serve restore points (by database id) over NBD on the configured
 * address. Sessions live in this process (the API) and end with it.
 */
@Injectable()
export class InstantSessionsService implements OnApplicationShutdown {
  private readonly logger = new Logger('InstantRestore');
  private readonly sessions: InstantSessions;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>,
  ) {
    this.sessions = new InstantSessions({
      ...config.nbd,
      openDisk: (pointId, diskKey) => this.openDisk(pointId, diskKey),
      log: (message) => this.logger.log(message),
    });
  }

  start(pointId: string, diskKey: string | undefined, opts: StartOptions): Promise<InstantSessionView> {
    return this.sessions.start(pointId, diskKey, opts);
  }

  list(): InstantSessionView[] {
    return this.sessions.list();
  }

  get(id: string): InstantSessionView {
    return this.sessions.get(id);
  }

  close(id: string, opts: CloseOptions): Promise<CloseResult> {
    return this.sessions.close(id, opts);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.sessions.shutdown();
  }

  private async openDisk(pointId: string, diskKey: string | undefined) {
    const point = await this.points.findOneBy({ id: pointId });
    if (!point) throw new VmkeepError(`restore point ${pointId} not found`, 'not_found');
    const entry = diskKey === undefined ? point.disks[0] : point.disks.find((d) => d.key === diskKey);
    if (!entry) {
      const keys = point.disks.map((d) => d.key).join(', ');
      throw new VmkeepError(`restore point ${pointId} has no disk ${JSON.stringify(diskKey ?? '')} (it has: ${keys})`, 'not_found');
    }
    const repository = await Repository.open(point.repositoryPath);
    return { disk: await repository.openDisk(point.repositoryPointId, entry.key), diskKey: entry.key };
  }
}
