import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post } from '@nestjs/common';
import { ApiBadGatewayResponse, ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { HostsService } from '@vmkeep/inventory';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import {
  CreateHostDto,
  HostDto,
  SyncResultDto,
  TestConnectionDto,
  TestResultDto,
  ThumbprintDto,
  ThumbprintRequestDto,
  UpdateHostDto,
} from './hosts.dto';

const HOST_ERROR = 'The host refused the credentials, could not be reached, or presented an untrusted certificate';

@ApiTags('hosts')
@ApiBearerAuth()
@Controller('hosts')
export class HostsController {
  constructor(
    private readonly hosts: HostsService,
    private readonly audit: AuditService,
  ) {}

  @Get()
  @ApiOkResponse({ type: [HostDto] })
  list(): Promise<HostDto[]> {
    return this.hosts.list();
  }

  @Get(':id')
  @ApiOkResponse({ type: HostDto })
  get(@Param('id', ParseUUIDPipe) id: string): Promise<HostDto> {
    return this.hosts.get(id);
  }

  @Roles('admin')
  @Post()
  @ApiCreatedResponse({ type: HostDto })
  async create(@CurrentUser() user: AuthUser, @Body() body: CreateHostDto): Promise<HostDto> {
    const host = await this.hosts.create(body);
    await this.audit.record(user, 'host.create', host.id, { name: host.name, url: host.url, username: host.username });
    return host;
  }

  @Roles('admin')
  @Patch(':id')
  @ApiOkResponse({ type: HostDto })
  async update(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string, @Body() body: UpdateHostDto): Promise<HostDto> {
    const host = await this.hosts.update(id, body);
    const changed = Object.keys(body).filter((k) => (body as Record<string, unknown>)[k] !== undefined);
    await this.audit.record(user, 'host.update', id, { name: host.name, changed });
    return host;
  }

  @Roles('admin')
  @Delete(':id')
  @HttpCode(204)
  async delete(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    const host = await this.hosts.delete(id);
    await this.audit.record(user, 'host.delete', id, { name: host.name });
  }

  /** Logs in to the saved host and reports what it is. */
  @Roles('admin')
  @Post(':id/test')
  @HttpCode(200)
  @ApiOkResponse({ type: TestResultDto })
  @ApiBadGatewayResponse({ description: HOST_ERROR })
  test(@Param('id', ParseUUIDPipe) id: string): Promise<TestResultDto> {
    return this.hosts.test(id);
  }

  /** Tries connection parameters before saving them. */
  @Roles('admin')
  @Post('test')
  @HttpCode(200)
  @ApiOkResponse({ type: TestResultDto })
  @ApiBadGatewayResponse({ description: HOST_ERROR })
  testParams(@Body() body: TestConnectionDto): Promise<TestResultDto> {
    return this.hosts.test(body);
  }

  /** Reads the host's inventory now (synchronously) and updates VMs and disks. */
  @Roles('admin')
  @Post(':id/sync')
  @HttpCode(200)
  @ApiOkResponse({ type: SyncResultDto })
  @ApiBadGatewayResponse({ description: HOST_ERROR })
  sync(@Param('id', ParseUUIDPipe) id: string): Promise<SyncResultDto> {
    return this.hosts.sync(id);
  }

  /** The SHA-256 thumbprint of the certificate a host presents, to compare and pin. */
  @Roles('admin')
  @Post('thumbprint')
  @HttpCode(200)
  @ApiOkResponse({ type: ThumbprintDto })
  @ApiBadGatewayResponse({ description: 'The host could not be reached' })
  async thumbprint(@Body() body: ThumbprintRequestDto): Promise<ThumbprintDto> {
    return { thumbprint: await this.hosts.fetchThumbprint(body.url) };
  }
}
