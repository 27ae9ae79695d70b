import { Module } from '@nestjs/common';
import { InventoryModule } from '@vmkeep/inventory';
import { RepositoriesModule } from '@vmkeep/repositories';
import { BackupService } from './backup.service';
import { SnapshotCleanupService } from './snapshot-cleanup.service';

/**
 * The backup job. Needs the global ConfigModule and PersistenceModule in the application that imports it; writes
 * into the repositories of RepositoriesModule (the job's `options.repositoryId`, else the default).
 */
@Module({
  imports: [InventoryModule, RepositoriesModule],
  providers: [BackupService, SnapshotCleanupService],
  exports: [BackupService, SnapshotCleanupService],
})
export class BackupModule {}
