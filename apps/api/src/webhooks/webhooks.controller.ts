import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { PageQueryDto } from '../common/paging';
import { CreateWebhookDto, UpdateWebhookDto, WebhookDeliveryPageDto, WebhookDto } from './webhooks.dto';
import { WebhooksService } from './webhooks.service';

/** Webhook endpoints (admin only): the workers POST signed events to them when jobs and policy runs end. */
@ApiTags('webhooks')
@ApiBearerAuth()
@Roles('admin')
@Controller('webhooks')
export class WebhooksController {
  constructor(
    private readonly webhooks: WebhooksService,
    private readonly audit: AuditService,
  ) {}

  @Get()
  @ApiOkResponse({ type: [WebhookDto] })
  list(): Promise<WebhookDto[]> {
    return this.webhooks.list();
  }

  @Get(':id')
  @ApiOkResponse({ type: WebhookDto })
  get(@Param('id', ParseUUIDPipe) id: string): Promise<WebhookDto> {
    return this.webhooks.get(id);
  }

  @Post()
  @ApiCreatedResponse({ type: WebhookDto })
  async create(@CurrentUser() user: AuthUser, @Body() body: CreateWebhookDto): Promise<WebhookDto> {
    const hook = await this.webhooks.create(body);
    await this.audit.record(user, 'webhook.create', hook.id, { name: hook.name, events: hook.events });
    return hook;
  }

  /** Changes the given fields (a new secret replaces the old one). */
  @Patch(':id')
  @ApiOkResponse({ type: WebhookDto })
  async update(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string, @Body() body: UpdateWebhookDto): Promise<WebhookDto> {
    const hook = await this.webhooks.update(id, body);
    await this.audit.record(user, 'webhook.update', id, { name: hook.name, fields: Object.keys(body) });
    return hook;
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiNoContentResponse()
  async remove(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    await this.webhooks.remove(id);
    await this.audit.record(user, 'webhook.delete', id, {});
  }

  /** The delivery log, newest first: state, attempts, last HTTP status / error and the body sent. */
  @Get(':id/deliveries')
  @ApiOkResponse({ type: WebhookDeliveryPageDto })
  deliveries(@Param('id', ParseUUIDPipe) id: string, @Query() query: PageQueryDto): Promise<WebhookDeliveryPageDto> {
    return this.webhooks.deliveryLog(id, query);
  }
}
