import { Body, Controller, HttpCode, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { VmkeepError } from '@vmkeep/contracts';
import { VmRestoreJobs } from '@vmkeep/restore';
import { AuditService } from '../audit/audit.service';
import { CurrentUser, Roles, type AuthUser } from '../auth/auth.decorators';
import { JobDto } from '../jobs/jobs.dto';
import { jobView } from '../jobs/jobs.service';
import { checkNameMap, RestoreVmRequestDto } from './restores.dto';

/** Full VM restore to vSphere: enqueues a restore-vm job; progress and cancellation through /api/jobs. */
@ApiTags('restore-points')
@ApiBearerAuth()
@Controller('restore-points')
export class RestoresController {
  constructor(
    private readonly restores: VmRestoreJobs,
    private readonly audit: AuditService,
  ) {}

  @Roles('operator')
  @Post(':id/restore-vm')
  @HttpCode(202)
  @ApiAcceptedResponse({ type: JobDto })
  async restoreVm(@Param('id', ParseUUIDPipe) id: string, @Body() body: RestoreVmRequestDto, @CurrentUser() user: AuthUser): Promise<JobDto> {
    let networkMap: Record<string, string> | undefined;
    let diskDatastores: Record<string, string> | undefined;
    try {
      networkMap = checkNameMap(body.networkMap, 'networkMap');
      diskDatastores = checkNameMap(body.diskDatastores, 'diskDatastores');
    } catch (error) {
      throw new VmkeepError((error as Error).message, 'invalid');
    }
    const { overwriteOriginal, ...rest } = body;
    const job = await this.restores.create(id, { ...rest, networkMap, diskDatastores, mode: overwriteOriginal ? 'overwrite' : 'new' }, user.id);
    await this.audit.record(user, 'restore.vm', job.id, { pointId: id, name: body.name ?? null, overwriteOriginal: overwriteOriginal ?? false });
    return jobView(job);
  }
}
