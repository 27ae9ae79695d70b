import { Module, OnApplicationShutdown } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { ConfigModule } from '@vmkeep/config';
import { InventoryModule } from '@vmkeep/inventory';
import { PersistenceModule } from '@vmkeep/persistence';
import { PoliciesModule } from '@vmkeep/policies';
import { QueueModule } from '@vmkeep/queue';
import { RepositoriesModule } from '@vmkeep/repositories';
import { closeSharedChunkWorkers } from '@vmkeep/repository';
import { FileBrowseModule, InstantRestoreModule, VmRestoreJobsModule } from '@vmkeep/restore';
import { AuditController } from './audit/audit.controller';
import { AuditService } from './audit/audit.service';
import { AuthController } from './auth/auth.controller';
import { AuthGuard } from './auth/auth.guard';
import { AuthService } from './auth/auth.service';
import { LoginThrottle } from './auth/login-throttle';
import { UsersController } from './auth/users.controller';
import { UsersService } from './auth/users.service';
import { ErrorsFilter } from './common/errors.filter';
import { FilesController } from './files/files.controller';
import { GuestRestoreController } from './files/guest-restore.controller';
import { HealthController } from './health.controller';
import { HostsController } from './hosts/hosts.controller';
import { InstantSessionsController } from './instant/instant-sessions.controller';
import { JobsController } from './jobs/jobs.controller';
import { JobsService } from './jobs/jobs.service';
import { MetricsController } from './metrics/metrics.controller';
import { MetricsService } from './metrics/metrics.service';
import { PoliciesController, VmProtectionController } from './policies/policies.controller';
import { RestorePointsController } from './restore-points/restore-points.controller';
import { RestorePointsService } from './restore-points/restore-points.service';
import { RestoresController } from './restores/restores.controller';
import { RepositoriesController } from './repositories/repositories.controller';
import { SearchController } from './search/search.controller';
import { SearchService } from './search/search.service';
import { VmsController } from './vms/vms.controller';
import { WebhooksController } from './webhooks/webhooks.controller';
import { WebhooksService } from './webhooks/webhooks.service';

/** The HTTP API: controllers, auth and the queue producer. It enqueues backups and never runs them. */
@Module({
  imports: [ConfigModule, PersistenceModule, QueueModule, InventoryModule, PoliciesModule, InstantRestoreModule, FileBrowseModule, VmRestoreJobsModule, RepositoriesModule],
  controllers: [
    HealthController,
    AuthController,
    UsersController,
    HostsController,
    VmsController,
    JobsController,
    RestorePointsController,
    AuditController,
    PoliciesController,
    VmProtectionController,
    InstantSessionsController,
    RestoresController,
    FilesController,
    GuestRestoreController,
    SearchController,
    RepositoriesController,
    WebhooksController,
    MetricsController,
  ],
  providers: [
    AuditService,
    AuthService,
    LoginThrottle,
    UsersService,
    JobsService,
    RestorePointsService,
    SearchService,
    WebhooksService,
    MetricsService,
    { provide: APP_GUARD, useClass: AuthGuard },
    { provide: APP_FILTER, useClass: ErrorsFilter },
  ],
})
export class AppModule implements OnApplicationShutdown {
  async onApplicationShutdown(): Promise<void> {
    // Restore point downloads decode chunks on the shared worker-thread pool.
    await closeSharedChunkWorkers();
  }
}
