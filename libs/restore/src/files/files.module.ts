import { Module } from '@nestjs/common';
import { FileBrowseService } from './files.service';

/** File-level browsing and downloads. Needs the global PersistenceModule in the application. */
@Module({
  providers: [FileBrowseService],
  exports: [FileBrowseService],
})
export class FileBrowseModule {}
