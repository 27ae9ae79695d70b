import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBadRequestResponse, ApiBearerAuth, ApiConflictResponse, ApiCreatedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { RepositoriesService } from '@vmkeep/repositories';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { AttachRepositoryDto, AttachResultDto, CreateRepositoryDto, RepositoryDto } from './repositories.dto';

/** Repositories as appliance resources: admins create, attach and remove them; operators read. No secret is ever returned. */
@ApiTags('repositories')
@ApiBearerAuth()
@Controller('repositories')
export class RepositoriesController {
  constructor(
    private readonly repositories: RepositoriesService,
    private readonly audit: AuditService,
  ) {}

  @Roles('operator')
  @Get()
  @ApiOkResponse({ type: [RepositoryDto] })
  list(): Promise<RepositoryDto[]> {
    return this.repositories.list();
  }

  @Roles('operator')
  @Get(':id')
  @ApiOkResponse({ type: RepositoryDto })
  get(@Param('id', ParseUUIDPipe) id: string): Promise<RepositoryDto> {
    return this.repositories.get(id);
  }

  /** Initialises a new repository in an empty folder or S3 prefix; a passphrase makes it encrypted. */
  @Roles('admin')
  @Post()
  @ApiCreatedResponse({ type: RepositoryDto })
  @ApiConflictResponse({ description: 'The name or location is taken, or the location is not empty (attach it instead)' })
  async create(@CurrentUser() user: AuthUser, @Body() body: CreateRepositoryDto): Promise<RepositoryDto> {
    const repo = await this.repositories.create(body);
    await this.audit.record(user, 'repository.create', repo.id, { name: repo.name, location: repo.location, encrypted: repo.encrypted });
    return repo;
  }

  /** Registers an existing repository (e.g. after losing the appliance) and imports its restore points. */
  @Roles('admin')
  @Post('attach')
  @ApiCreatedResponse({ type: AttachResultDto })
  @ApiBadRequestResponse({ description: 'Wrong or missing passphrase, or no repository at the location; nothing is imported' })
  async attach(@CurrentUser() user: AuthUser, @Body() body: AttachRepositoryDto): Promise<AttachResultDto> {
    const result = await this.repositories.attach(body);
    const { repository: repo, imported, skipped, vmsCreated } = result;
    await this.audit.record(user, 'repository.attach', repo.id, { name: repo.name, location: repo.location, encrypted: repo.encrypted, imported, skipped, vmsCreated });
    return result;
  }

  /** Forgets the repository; its data is never deleted. Refused for the default and while points or policies use it. */
  @Roles('admin')
  @Delete(':id')
  @HttpCode(204)
  @ApiConflictResponse({ description: 'Default repository, or restore points / policies still reference it' })
  async remove(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    const row = await this.repositories.remove(id);
    await this.audit.record(user, 'repository.delete', id, { name: row.name, location: row.location });
  }
}
