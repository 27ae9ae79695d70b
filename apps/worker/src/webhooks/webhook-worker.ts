import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { WEBHOOK_DELIVERY_JOB, WEBHOOK_QUEUE } from '@vmkeep/contracts';
import { SecretBox, WebhookDeliveryEntity, WebhookEntity } from '@vmkeep/persistence';
import { REDIS_OPTIONS, type RedisConnectionOptions } from '@vmkeep/queue';
import { Worker, type Job } from 'bullmq';
import { Repository } from 'typeorm';
import type { DeliveryPayload } from './webhook-notifier';
import { postSigned } from './signed-post';

/**
 * Sends webhook deliveries: one signed POST per attempt with VMKEEP_WEBHOOK_TIMEOUT_MS; a non-2xx answer or no
 * answer records the attempt on the delivery row and throws, so BullMQ retries with exponential backoff
 * (VMKEEP_WEBHOOK_ATTEMPTS, VMKEEP_WEBHOOK_BACKOFF_MS); the last failed attempt leaves the row `failed`.
 */
@Injectable()
export class WebhookWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly log = new Logger(WebhookWorker.name);
  private worker?: Worker<DeliveryPayload>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(REDIS_OPTIONS) private readonly connection: RedisConnectionOptions,
    @InjectRepository(WebhookEntity) private readonly webhooks: Repository<WebhookEntity>,
    @InjectRepository(WebhookDeliveryEntity) private readonly deliveries: Repository<WebhookDeliveryEntity>,
    private readonly box: SecretBox,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.worker = new Worker<DeliveryPayload>(WEBHOOK_QUEUE, (job) => this.process(job), { connection: this.connection, concurrency: 4 });
    this.worker.on('error', (err) => this.log.error(`queue error: ${err.message}`));
    await this.worker.waitUntilReady();
  }

  async onModuleDestroy(): Promise<void> {
    await this.worker?.close();
  }

  private async process(job: Job<DeliveryPayload>): Promise<string> {
    if (job.name !== WEBHOOK_DELIVERY_JOB) throw new Error(`no handler for job name "${job.name}" on ${WEBHOOK_QUEUE}`);
    const delivery = await this.deliveries.findOneBy({ id: job.data.deliveryId });
    if (!delivery || delivery.state === 'delivered') return 'nothing to send';
    const attempt = job.attemptsMade + 1;
    const hook = await this.webhooks.findOneBy({ id: delivery.webhookId });
    if (!hook || !hook.enabled) {
      await this.deliveries.update(delivery.id, { state: 'failed', attempts: attempt, lastError: 'the webhook was deleted or disabled' });
      return 'dropped';
    }
    const outcome = await postSigned(hook.url, delivery.payload, this.box.open(hook.secretSealed), { event: delivery.event, deliveryId: delivery.id }, this.config.webhooks.timeoutMs);
    const recorded = { attempts: attempt, lastStatus: outcome.status, lastDurationMs: outcome.durationMs };
    if (outcome.ok) {
      await this.deliveries.update(delivery.id, { ...recorded, state: 'delivered', lastError: null, deliveredAt: new Date() });
      return 'delivered';
    }
    const last = attempt >= (job.opts.attempts ?? 1);
    await this.deliveries.update(delivery.id, { ...recorded, state: last ? 'failed' : 'retrying', lastError: outcome.error ?? null });
    this.log.warn(`webhook ${hook.name}: ${delivery.event} delivery ${delivery.id} attempt ${attempt} failed: ${outcome.error}${last ? ' (giving up)' : ''}`);
    throw new Error(outcome.error);
  }
}
