import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { AuditService } from '../audit/audit.service';
import { CurrentUser, Roles, type AuthUser } from '../auth/auth.decorators';
import { FileSearchQueryDto, FileSearchResultDto } from './search.dto';
import { SearchService } from './search.service';

@ApiTags('search')
@ApiBearerAuth()
@Controller('search')
export class SearchController {
  constructor(
    private readonly search: SearchService,
    private readonly audit: AuditService,
  ) {}

  /**
   * Finds files by name in the guest file index of every restore point (of one VM with `vm`). Each path lists
   * its versions (type, size, mtime) and the restore points that hold each version.
   */
  @Get('files')
  @Roles('viewer')
  @ApiOkResponse({ type: FileSearchResultDto })
  async files(@Query() query: FileSearchQueryDto, @CurrentUser() user: AuthUser): Promise<FileSearchResultDto> {
    const result = await this.search.searchFiles(query);
    await this.audit.record(user, 'files.search', query.vm ?? null, { q: query.q, hits: result.hits.length });
    return result;
  }
}
