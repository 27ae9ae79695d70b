import { Module } from '@nestjs/common';
import { RepositoriesService } from './repositories.service';
import { RepositoryResolver } from './repository-resolver';

/**
 * The appliance's repository registry. Needs the global ConfigModule and PersistenceModule. Import it wherever
 * backups or restores run (Nest keeps one instance per process); it exports RepositoriesService and the
 * RepositoryResolver the backup job asks for its target.
 */
@Module({
  providers: [RepositoriesService, { provide: RepositoryResolver, useExisting: RepositoriesService }],
  exports: [RepositoriesService, RepositoryResolver],
})
export class RepositoriesModule {}
