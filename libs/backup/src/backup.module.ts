import { Module } from '@nestjs/common';
import { InventoryModule } from '@vmkeep/inventory';
import { BackupService } from './backup.service';
import { ChunkRepositoryProvider } from './chunk-repository.provider';
import { SnapshotCleanupService } from './snapshot-cleanup.service';

/**
 * The backup job. Needs the global ConfigModule and PersistenceModule in the application that imports it.
 */
@Module({
  imports: [InventoryModule],
  providers: [BackupService, SnapshotCleanupService, ChunkRepositoryProvider],
  exports: [BackupService, SnapshotCleanupService],
})
export class BackupModule {}
