import { Inject, Injectable, Logger } from '@nestjs/common';
import { BackupService, describeFailure } from '@vmkeep/backup';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { BACKUP_JOB, BACKUP_QUEUE, type BackupJobPayload } from '@vmkeep/contracts';
import type { RedisConnectionOptions } from '@vmkeep/queue';
import { QueueEvents, Worker, type Job } from 'bullmq';
import { WebhookNotifier } from './webhooks/webhooks.module';

/**
 * The thin BullMQ side of the worker: takes BACKUP_JOBs off the queue and hands each to BackupService.run, which
 * records everything on the job row.
 *
 * A worker that dies mid-job leaves its BullMQ job "stalled": once the job's lock expires (config.worker.lockMs),
 * the stalled-job check of a live worker (every config.worker.stalledIntervalMs) hands it to a worker again, once
 * (maxStalledCount 1), and BackupService.run restarts a row it finds "running" from scratch (a fresh snapshot,
 * leftovers of the dead run removed). If it stalls again BullMQ fails it without calling us; the QueueEvents
 * listener below then marks the row failed so it never stays "running".
 */
@Injectable()
export class BackupWorker {
  private readonly log = new Logger(BackupWorker.name);
  private worker?: Worker<BackupJobPayload>;
  private events?: QueueEvents;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly backups: BackupService,
    private readonly webhooks: WebhookNotifier,
  ) {}

  async start(connection: RedisConnectionOptions): Promise<void> {
    this.worker = new Worker<BackupJobPayload>(BACKUP_QUEUE, (job, _token, signal) => this.process(job, signal), {
      connection,
      concurrency: this.config.worker.concurrency,
      maxStalledCount: 1,
      lockDuration: this.config.worker.lockMs,
      stalledInterval: this.config.worker.stalledIntervalMs,
    });
    this.worker.on('error', (err) => this.log.error(`queue error: ${describeFailure(err)}`));
    this.events = new QueueEvents(BACKUP_QUEUE, { connection });
    this.events.on('failed', ({ jobId, failedReason }) => void this.onFailed(jobId, failedReason));
    await Promise.all([this.worker.waitUntilReady(), this.events.waitUntilReady()]);
    this.log.log(`processing ${BACKUP_QUEUE} with concurrency ${this.config.worker.concurrency}`);
  }

  /** Stops taking jobs and waits for running ones; with `cancelRunning`, aborts them first (they fail cleanly). */
  async stop(cancelRunning = false): Promise<void> {
    if (cancelRunning) this.worker?.cancelAllJobs('worker shutting down');
    await this.worker?.close();
    await this.events?.close();
  }

  private async process(job: Job<BackupJobPayload>, signal?: AbortSignal): Promise<string> {
    if (job.name !== BACKUP_JOB) throw new Error(`no handler for job name "${job.name}" on ${BACKUP_QUEUE}`);
    const state = await this.backups.run(job.data.jobId, signal);
    this.log.log(`job ${job.data.jobId}: ${state}`);
    await this.webhooks.jobFinished(job.data.jobId);
    return state;
  }

  /**
   * A BullMQ job failed without our processor recording it (e.g. stalled too often): close the row. The BullMQ
   * job id is the JobEntity id (see BackupQueue.enqueue).
   */
  private async onFailed(jobId: string, reason: string): Promise<void> {
    try {
      await this.backups.markInterrupted(jobId, `the worker could not finish this job: ${reason}`);
      await this.webhooks.jobFinished(jobId);
    } catch (err) {
      this.log.warn(`could not close job ${jobId} after a queue failure: ${describeFailure(err)}`);
    }
  }
}
