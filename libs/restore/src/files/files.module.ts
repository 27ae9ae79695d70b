import { Module } from '@nestjs/common';
import { RepositoriesModule } from '@vmkeep/repositories';
import { FileBrowseService } from './files.service';

/** File-level browsing and downloads. Needs the global PersistenceModule and ConfigModule in the application. */
@Module({
  imports: [RepositoriesModule],
  providers: [FileBrowseService],
  exports: [FileBrowseService],
})
export class FileBrowseModule {}
