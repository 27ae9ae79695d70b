import { Module } from '@nestjs/common';
import { InventoryModule } from '@vmkeep/inventory';
import { InstantSessionsService } from './instant-sessions.service';

/**
 * Instant restore over NBD. Needs the global ConfigModule and PersistenceModule in the application; hosts (for
 * "migrate to production" onto a datastore) come from InventoryModule.
 */
@Module({
  imports: [InventoryModule],
  providers: [InstantSessionsService],
  exports: [InstantSessionsService],
})
export class InstantRestoreModule {}
