import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { SecretBox, WEBHOOK_EVENTS, WebhookDeliveryEntity, WebhookEntity, type WebhookEvent } from '@vmkeep/persistence';
import { paging, type PageQueryDto } from '../common/paging';
import type { CreateWebhookDto, UpdateWebhookDto, WebhookDeliveryDto, WebhookDeliveryPageDto, WebhookDto } from './webhooks.dto';

/** Expands "restore.*" / "*" and checks names; unknown events are a 400 naming them. */
export function expandEvents(requested: string[]): WebhookEvent[] {
  const out = new Set<WebhookEvent>();
  for (const name of requested) {
    const matches = name.endsWith('*')
      ? WEBHOOK_EVENTS.filter((e) => e.startsWith(name.slice(0, -1)))
      : WEBHOOK_EVENTS.filter((e) => e === name);
    if (matches.length === 0) {
      throw new VmkeepError(`unknown webhook event "${name}" (known: ${WEBHOOK_EVENTS.join(', ')})`, 'invalid');
    }
    for (const e of matches) out.add(e);
  }
  return WEBHOOK_EVENTS.filter((e) => out.has(e));
}

/** An http(s) URL; anything else is a 400. Credentials in it are allowed (they stay in the database only). */
export function checkWebhookUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VmkeepError('url must be an absolute http:// or https:// URL', 'invalid');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new VmkeepError('url must be an absolute http:// or https:// URL', 'invalid');
  }
  return parsed.toString();
}

/** Admin-managed webhook endpoints and their delivery log; the secret is sealed with SecretBox and never returned. */
@Injectable()
export class WebhooksService {
  constructor(
    @InjectRepository(WebhookEntity) private readonly hooks: Repository<WebhookEntity>,
    @InjectRepository(WebhookDeliveryEntity) private readonly deliveries: Repository<WebhookDeliveryEntity>,
    private readonly box: SecretBox,
  ) {}

  async list(): Promise<WebhookDto[]> {
    return (await this.hooks.find({ order: { createdAt: 'ASC', id: 'ASC' } })).map(webhookView);
  }

  async get(id: string): Promise<WebhookDto> {
    return webhookView(await this.entity(id));
  }

  async create(body: CreateWebhookDto): Promise<WebhookDto> {
    const hook = this.hooks.create({
      name: body.name.trim(),
      url: checkWebhookUrl(body.url),
      events: expandEvents(body.events),
      secretSealed: this.box.seal(body.secret),
      enabled: body.enabled ?? true,
    });
    return webhookView(await this.hooks.save(hook));
  }

  async update(id: string, body: UpdateWebhookDto): Promise<WebhookDto> {
    const hook = await this.entity(id);
    if (body.name !== undefined) hook.name = body.name.trim();
    if (body.url !== undefined) hook.url = checkWebhookUrl(body.url);
    if (body.events !== undefined) hook.events = expandEvents(body.events);
    if (body.secret !== undefined) hook.secretSealed = this.box.seal(body.secret);
    if (body.enabled !== undefined) hook.enabled = body.enabled;
    return webhookView(await this.hooks.save(hook));
  }

  /** Removes the webhook and its delivery log; queued deliveries are dropped by the worker. */
  async remove(id: string): Promise<void> {
    await this.entity(id);
    await this.deliveries.delete({ webhookId: id });
    await this.hooks.delete(id);
  }

  async deliveryLog(id: string, query: PageQueryDto): Promise<WebhookDeliveryPageDto> {
    await this.entity(id);
    const { page, pageSize, skip } = paging(query);
    const [rows, total] = await this.deliveries.findAndCount({
      where: { webhookId: id },
      order: { createdAt: 'DESC', id: 'DESC' },
      skip,
      take: pageSize,
    });
    return { items: rows.map(deliveryView), total, page, pageSize };
  }

  private async entity(id: string): Promise<WebhookEntity> {
    const hook = await this.hooks.findOneBy({ id });
    if (!hook) throw new VmkeepError(`webhook ${id} not found`, 'not_found');
    return hook;
  }
}

function webhookView(h: WebhookEntity): WebhookDto {
  return { id: h.id, name: h.name, url: h.url, events: h.events, enabled: h.enabled, hasSecret: true, createdAt: h.createdAt, updatedAt: h.updatedAt };
}

function deliveryView(d: WebhookDeliveryEntity): WebhookDeliveryDto {
  let payload: unknown;
  try {
    payload = JSON.parse(d.payload);
  } catch {
    payload = d.payload;
  }
  return {
    id: d.id,
    webhookId: d.webhookId,
    event: d.event,
    state: d.state,
    attempts: d.attempts,
    lastStatus: d.lastStatus,
    lastError: d.lastError,
    lastDurationMs: d.lastDurationMs,
    payload,
    createdAt: d.createdAt,
    deliveredAt: d.deliveredAt,
  };
}
