import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { PoliciesService } from '@vmkeep/policies';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { CreatePolicyDto, PolicyDto, PolicyRunDto, RunNowDto, UpdatePolicyDto, VmProtectionDto } from './policies.dto';

/** Backup policies: viewers read, operators and admins write. */
@ApiTags('policies')
@ApiBearerAuth()
@Controller('policies')
export class PoliciesController {
  constructor(
    private readonly policies: PoliciesService,
    private readonly audit: AuditService,
  ) {}

  @Get()
  @ApiOkResponse({ type: [PolicyDto] })
  list(): Promise<PolicyDto[]> {
    return this.policies.list();
  }

  @Get(':id')
  @ApiOkResponse({ type: PolicyDto })
  get(@Param('id', ParseUUIDPipe) id: string): Promise<PolicyDto> {
    return this.policies.get(id);
  }

  @Roles('operator')
  @Post()
  @ApiCreatedResponse({ type: PolicyDto })
  async create(@CurrentUser() user: AuthUser, @Body() body: CreatePolicyDto): Promise<PolicyDto> {
    const policy = await this.policies.create(body);
    await this.audit.record(user, 'policy.create', policy.id, { name: policy.name, cron: policy.cron, timeZone: policy.timeZone });
    return policy;
  }

  /** Changes the given fields; the result is validated as a whole. */
  @Roles('operator')
  @Patch(':id')
  @ApiOkResponse({ type: PolicyDto })
  async update(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string, @Body() body: UpdatePolicyDto): Promise<PolicyDto> {
    const policy = await this.policies.update(id, body);
    await this.audit.record(user, 'policy.update', id, { name: policy.name, fields: Object.keys(body) });
    return policy;
  }

  @Roles('operator')
  @Delete(':id')
  @HttpCode(204)
  @ApiNoContentResponse()
  async remove(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    await this.policies.remove(id);
    await this.audit.record(user, 'policy.delete', id, {});
  }

  /** Queues a run of the policy now; a worker runs it like a scheduled tick. */
  @Roles('operator')
  @Post(':id/run')
  @HttpCode(202)
  @ApiAcceptedResponse({ type: RunNowDto })
  async runNow(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<RunNowDto> {
    const queued = await this.policies.runNow(id);
    await this.audit.record(user, 'policy.run', id, {});
    return queued;
  }

  /** The policy's runs, newest first, with what happened to each VM. */
  @Get(':id/runs')
  @ApiOkResponse({ type: [PolicyRunDto] })
  runs(@Param('id', ParseUUIDPipe) id: string): Promise<PolicyRunDto[]> {
    return this.policies.history(id);
  }
}

/** The per-VM view of protection (lives here because it is about policies). */
@ApiTags('vms')
@ApiBearerAuth()
@Controller('vms')
export class VmProtectionController {
  constructor(private readonly policies: PoliciesService) {}

  @Get(':id/protection')
  @ApiOkResponse({ type: VmProtectionDto })
  protection(@Param('id', ParseUUIDPipe) id: string): Promise<VmProtectionDto> {
    return this.policies.protection(id);
  }
}
