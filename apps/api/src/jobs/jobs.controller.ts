import { Controller, Get, HttpCode, Param, ParseUUIDPipe, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiConflictResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { JobDto, JobPageDto, JobsQueryDto } from './jobs.dto';
import { JobsService } from './jobs.service';

@ApiTags('jobs')
@ApiBearerAuth()
@Controller('jobs')
export class JobsController {
  constructor(
    private readonly jobs: JobsService,
    private readonly audit: AuditService,
  ) {}

  /** Jobs, newest first, with live progress. */
  @Get()
  @ApiOkResponse({ type: JobPageDto })
  list(@Query() query: JobsQueryDto): Promise<JobPageDto> {
    return this.jobs.list(query);
  }

  @Get(':id')
  @ApiOkResponse({ type: JobDto })
  get(@Param('id', ParseUUIDPipe) id: string): Promise<JobDto> {
    return this.jobs.get(id);
  }

  /** Queued: removed from the queue and cancelled. Running: the worker is asked to stop. */
  @Roles('operator')
  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOkResponse({ type: JobDto })
  @ApiConflictResponse({ description: 'The job already ended' })
  async cancel(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<JobDto> {
    const job = await this.jobs.cancel(id);
    await this.audit.record(user, 'job.cancel', id, { state: job.state, vmId: job.vmId });
    return job;
  }
}
