import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { RESTORE_QUEUE, RESTORE_VM_JOB, type BackupJobPayload } from '@vmkeep/contracts';
import type { RedisConnectionOptions } from '@vmkeep/queue';
import { VmRestoreService } from '@vmkeep/restore';
import { QueueEvents, Worker, type Job } from 'bullmq';
import { WebhookNotifier } from './webhooks/webhooks.module';

/** The BullMQ side of full VM restores: takes RESTORE_VM_JOBs and hands each to VmRestoreService.run. */
@Injectable()
export class RestoreWorker {
  private readonly log = new Logger(RestoreWorker.name);
  private worker?: Worker<BackupJobPayload>;
  private events?: QueueEvents;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly restores: VmRestoreService,
    private readonly webhooks: WebhookNotifier,
  ) {}

  async start(connection: RedisConnectionOptions): Promise<void> {
    this.worker = new Worker<BackupJobPayload>(RESTORE_QUEUE, (job, _token, signal) => this.process(job, signal), {
      connection,
      concurrency: this.config.worker.concurrency,
      maxStalledCount: 0,
      lockDuration: this.config.worker.lockMs,
      stalledInterval: this.config.worker.stalledIntervalMs,
    });
    this.worker.on('error', (err) => this.log.error(`queue error: ${err.message}`));
    this.events = new QueueEvents(RESTORE_QUEUE, { connection });
    this.events.on('failed', ({ jobId, failedReason }) => {
      this.restores
        .markInterrupted(jobId, `the worker could not finish this restore: ${failedReason}`)
        .then(() => this.webhooks.jobFinished(jobId))
        .catch(() => undefined);
    });
    await Promise.all([this.worker.waitUntilReady(), this.events.waitUntilReady()]);
  }

  async stop(cancelRunning = false): Promise<void> {
    if (cancelRunning) this.worker?.cancelAllJobs('worker shutting down');
    await this.worker?.close();
    await this.events?.close();
  }

  private async process(job: Job<BackupJobPayload>, signal?: AbortSignal): Promise<string> {
    if (job.name !== RESTORE_VM_JOB) throw new Error(`no handler for job name "${job.name}" on ${RESTORE_QUEUE}`);
    const state = await this.restores.run(job.data.jobId, signal);
    this.log.log(`restore job ${job.data.jobId}: ${state}`);
    await this.webhooks.jobFinished(job.data.jobId);
    return state;
  }
}
