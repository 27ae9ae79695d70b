import { Module } from '@nestjs/common';
import { BackupModule } from '@vmkeep/backup';
import { ConfigModule } from '@vmkeep/config';
import { InventoryModule } from '@vmkeep/inventory';
import { PersistenceModule } from '@vmkeep/persistence';
import { VmRestoreModule } from '@vmkeep/restore';
import { BackupWorker } from './backup-worker';
import { PolicyWorkerModule } from './policy-worker';
import { RestoreWorker } from './restore-worker';
import { WebhooksWorkerModule } from './webhooks/webhooks.module';

/** Root module of the worker process: no HTTP, only queue processors and the snapshot cleanup. */
@Module({
  imports: [ConfigModule, PersistenceModule, InventoryModule, BackupModule, PolicyWorkerModule, VmRestoreModule, WebhooksWorkerModule],
  providers: [BackupWorker, RestoreWorker],
})
export class WorkerModule {}
