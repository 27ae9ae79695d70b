import { Module } from '@nestjs/common';
import { InstantSessionsService } from './instant-sessions.service';

/** Instant restore over NBD. Needs the global ConfigModule and PersistenceModule in the application. */
@Module({
  providers: [InstantSessionsService],
  exports: [InstantSessionsService],
})
export class InstantRestoreModule {}
