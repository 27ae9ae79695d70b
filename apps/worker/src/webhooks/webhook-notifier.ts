import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { WEBHOOK_DELIVERY_JOB, WEBHOOK_QUEUE, type JobState } from '@vmkeep/contracts';
import { JobEntity, PolicyEntity, PolicyRunEntity, VmEntity, WebhookDeliveryEntity, WebhookEntity, type WebhookEvent } from '@vmkeep/persistence';
import { REDIS_OPTIONS, type RedisConnectionOptions } from '@vmkeep/queue';
import { Queue } from 'bullmq';
import { Repository } from 'typeorm';

/** Payload of a WEBHOOK_DELIVERY_JOB. */
export interface DeliveryPayload {
  deliveryId: string;
}

/** The event a finished job raises; none for cancelled jobs and unknown types. */
export function jobEvent(type: string, state: JobState): WebhookEvent | undefined {
  const kind = type === 'backup' ? 'backup' : type.startsWith('restore') ? 'restore' : undefined;
  if (!kind || (state !== 'succeeded' && state !== 'failed')) return undefined;
  return `${kind}.${state}`;
}

/**
 * Raises webhook events: for every enabled webhook subscribed to the event, a delivery row (the exact JSON body,
 * state `pending`) and a BullMQ job on WEBHOOK_QUEUE that WebhookWorker sends. A delivery is unique per webhook,
 * event and subject (job or run id), so an event raised twice (several workers seeing a queue failure, a retried
 * run) is sent once. Never throws into its caller: a job's outcome must not depend on its notifications.
 */
@Injectable()
export class WebhookNotifier implements OnModuleDestroy {
  private readonly log = new Logger(WebhookNotifier.name);
  private readonly queue: Queue<DeliveryPayload>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(REDIS_OPTIONS) connection: RedisConnectionOptions,
    @InjectRepository(WebhookEntity) private readonly webhooks: Repository<WebhookEntity>,
    @InjectRepository(WebhookDeliveryEntity) private readonly deliveries: Repository<WebhookDeliveryEntity>,
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    @InjectRepository(PolicyEntity) private readonly policies: Repository<PolicyEntity>,
  ) {
    this.queue = new Queue<DeliveryPayload>(WEBHOOK_QUEUE, { connection });
    this.queue.on('error', (err) => this.log.warn(`webhook queue: ${err.message}`));
  }

  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
  }

  /** A backup or restore job ended: backup.succeeded / backup.failed / restore.succeeded / restore.failed. */
  async jobFinished(jobId: string): Promise<void> {
    await this.guard(`job ${jobId}`, async () => {
      const job = await this.jobs.findOneBy({ id: jobId });
      const event = job ? jobEvent(job.type, job.state) : undefined;
      if (!job || !event) return;
      const vm = job.vmId ? await this.vms.findOne({ where: { id: job.vmId }, select: { id: true, name: true } }) : null;
      const durationSeconds = job.startedAt && job.finishedAt ? (job.finishedAt.getTime() - job.startedAt.getTime()) / 1000 : null;
      await this.raise(event, job.id, {
        job: {
          id: job.id,
          type: job.type,
          state: job.state,
          vmId: job.vmId,
          vmName: vm?.name ?? null,
          phase: job.phase,
          error: job.error,
          restorePointId: job.restorePointId,
          startedAt: job.startedAt,
          finishedAt: job.finishedAt,
          durationSeconds,
          bytesRead: job.bytesRead,
          stats: job.stats,
          disks: job.disks,
        },
      });
    });
  }

  /** A policy run ended (any final state): policy.run.finished. */
  async policyRunFinished(run: PolicyRunEntity): Promise<void> {
    await this.guard(`policy run ${run.id}`, async () => {
      if (run.state === 'running') return;
      const policy = await this.policies.findOne({ where: { id: run.policyId }, select: { id: true, name: true } });
      await this.raise('policy.run.finished', run.id, {
        run: {
          id: run.id,
          policyId: run.policyId,
          policyName: policy?.name ?? null,
          state: run.state,
          manual: run.manual,
          tickAt: run.tickAt,
          startedAt: run.startedAt,
          finishedAt: run.finishedAt,
          vms: run.vms,
          warnings: run.warnings,
        },
      });
    });
  }

  private async raise(event: WebhookEvent, subject: string, data: Record<string, unknown>): Promise<void> {
    const hooks = (await this.webhooks.findBy({ enabled: true })).filter((h) => h.events.includes(event));
    if (hooks.length === 0) return;
    const payload = JSON.stringify({ event, occurredAt: new Date().toISOString(), ...data });
    const { attempts, backoffMs } = this.config.webhooks;
    let queued = 0;
    for (const hook of hooks) {
      await this.deliveries
        .createQueryBuilder()
        .insert()
        .values({ webhookId: hook.id, event, subject, payload, state: 'pending', attempts: 0, lastStatus: null, lastError: null, deliveredAt: null })
        .orIgnore()
        .execute();
      const delivery = await this.deliveries.findOne({ where: { webhookId: hook.id, event, subject }, select: { id: true, state: true } });
      if (!delivery || delivery.state !== 'pending') continue;
      // The BullMQ job id is the delivery id: adding it again while it exists is a no-op.
      await this.queue.add(WEBHOOK_DELIVERY_JOB, { deliveryId: delivery.id }, {
        jobId: delivery.id,
        attempts,
        backoff: { type: 'exponential', delay: backoffMs },
        removeOnComplete: { count: 1000 },
        removeOnFail: { count: 1000 },
      });
      queued++;
    }
    if (queued) this.log.log(`${event} ${subject}: ${queued} webhook delivery(ies) queued`);
  }

  private async guard(what: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      this.log.warn(`webhook events for ${what} not queued: ${(err as Error).message}`);
    }
  }
}
