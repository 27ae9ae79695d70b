import { Inject, Module, OnModuleDestroy } from '@nestjs/common';
import { Queue } from 'bullmq';
import { InventoryModule } from '@vmkeep/inventory';
import { QueueModule, REDIS_OPTIONS, type RedisConnectionOptions } from '@vmkeep/queue';
import { BackupJobsService } from './backup-jobs.service';
import { ConcurrencyGate } from './concurrency-gate';
import { PoliciesService } from './policies.service';
import { PolicyMembership } from './policy-membership';
import { PolicyRetentionService } from './policy-retention.service';
import { POLICY_RUN_POLL_MS, PolicyRunner } from './policy-runner';
import { POLICY_QUEUE, POLICY_QUEUE_TOKEN, PolicyScheduler } from './policy-scheduler';

/**
 * Backup policies: CRUD with scheduler sync (API), the run engine (workers), and BackupJobsService, the shared
 * way to create backup jobs. Needs ConfigModule and PersistenceModule; brings QueueModule and InventoryModule
 * (a run refreshes stale host inventories before it selects).
 */
@Module({
  imports: [QueueModule, InventoryModule],
  providers: [
    {
      provide: POLICY_QUEUE_TOKEN,
      inject: [REDIS_OPTIONS],
      useFactory: (connection: RedisConnectionOptions): Queue => new Queue(POLICY_QUEUE, { connection }),
    },
    { provide: POLICY_RUN_POLL_MS, useValue: 1000 },
    PolicyScheduler,
    BackupJobsService,
    ConcurrencyGate,
    PolicyMembership,
    PolicyRetentionService,
    PoliciesService,
    PolicyRunner,
  ],
  exports: [QueueModule, POLICY_QUEUE_TOKEN, PolicyScheduler, BackupJobsService, PolicyMembership, PolicyRetentionService, PoliciesService, PolicyRunner],
})
export class PoliciesModule implements OnModuleDestroy {
  constructor(@Inject(POLICY_QUEUE_TOKEN) private readonly queue: Queue) {}

  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
  }
}
