import { Inject, Module, OnModuleDestroy } from '@nestjs/common';
import { Queue } from 'bullmq';
import { BACKUP_QUEUE } from '@vmkeep/contracts';
import { APP_CONFIG, AppConfig } from '@vmkeep/config';
import { BACKUP_QUEUE_TOKEN, BackupQueue } from './backup-queue';
import { RedisConnectionOptions, redisConnection } from './redis-connection';

/** Injection token of the ioredis options of the appliance's Redis (embedded server already running). */
export const REDIS_OPTIONS = Symbol('REDIS_OPTIONS');

/**
 * Redis connection and the backup queue producer. Needs APP_CONFIG (ConfigModule). The Queue opens its own
 * connections from REDIS_OPTIONS and closes them when the module is destroyed.
 */
@Module({
  providers: [
    {
      provide: REDIS_OPTIONS,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig): Promise<RedisConnectionOptions> => redisConnection(config),
    },
    {
      provide: BACKUP_QUEUE_TOKEN,
      inject: [REDIS_OPTIONS],
      useFactory: (connection: RedisConnectionOptions): Queue => new Queue(BACKUP_QUEUE, { connection }),
    },
    BackupQueue,
  ],
  exports: [REDIS_OPTIONS, BACKUP_QUEUE_TOKEN, BackupQueue],
})
export class QueueModule implements OnModuleDestroy {
  constructor(@Inject(BACKUP_QUEUE_TOKEN) private readonly queue: Queue) {}

  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
  }
}
