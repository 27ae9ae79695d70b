import { Inject, Injectable } from '@nestjs/common';
import { Queue } from 'bullmq';
import { BACKUP_JOB, BackupJobPayload } from '@vmkeep/contracts';

/** Injection token of the BullMQ Queue for BACKUP_QUEUE. */
export const BACKUP_QUEUE_TOKEN = Symbol('BACKUP_QUEUE');

/**
 * Producer side of the backup queue. The BullMQ job id is our JobEntity id, so enqueuing the same job twice
 * adds it once; BullMQ never retries (attempts 1): a failed backup is a new job.
 */
@Injectable()
export class BackupQueue {
  constructor(@Inject(BACKUP_QUEUE_TOKEN) private readonly queue: Queue<BackupJobPayload>) {}

  async enqueue(jobId: string): Promise<void> {
    await this.queue.add(BACKUP_JOB, { jobId }, {
      jobId,
      attempts: 1,
      removeOnComplete: { age: 24 * 3600 },
      removeOnFail: { age: 7 * 24 * 3600 },
    });
  }

  /**
   * Removes a job that no worker has taken yet. Returns false when BullMQ refused (the job is already locked by
   * a worker, i.e. running) or does not know the id.
   */
  async remove(jobId: string): Promise<boolean> {
    return (await this.queue.remove(jobId)) === 1;
  }

  /** Number of jobs waiting or delayed; also the health check's round trip to Redis. */
  async waitingCount(): Promise<number> {
    return this.queue.count();
  }
}
