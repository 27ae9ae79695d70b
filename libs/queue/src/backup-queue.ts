import { Inject, Injectable, Optional } from '@nestjs/common';
import { Queue } from 'bullmq';
import { BACKUP_JOB, BackupJobPayload } from '@vmkeep/contracts';

/** Injection token of the BullMQ Queue for BACKUP_QUEUE. */
export const BACKUP_QUEUE_TOKEN = Symbol('BACKUP_QUEUE');
/** Optional injection token: how long a queue operation may wait for Redis (ms, default 10 s). */
export const QUEUE_TIMEOUT_MS = Symbol('QUEUE_TIMEOUT_MS');

const DEFAULT_TIMEOUT_MS = 10_000;

/** Redis did not answer in time (BullMQ connections retry forever, so without a limit callers would hang). */
export class QueueUnavailableError extends Error {
  constructor(operation: string, timeoutMs: number) {
    super(`the job queue (Redis) did not answer within ${timeoutMs / 1000} s while trying to ${operation}`);
    this.name = 'QueueUnavailableError';
  }
}

/**
 * Producer side of the backup queue. The BullMQ job id is our JobEntity id, so enqueuing the same job twice
 * adds it once; BullMQ never retries (attempts 1): a failed backup is a new job.
 */
@Injectable()
export class BackupQueue {
  constructor(
    @Inject(BACKUP_QUEUE_TOKEN) private readonly queue: Queue<BackupJobPayload>,
    @Optional() @Inject(QUEUE_TIMEOUT_MS) private readonly timeoutMs: number = DEFAULT_TIMEOUT_MS,
  ) {}

  /**
   * Adds the job. On QueueUnavailableError the add may still reach Redis later, so the consumer must check the
   * job's state in the database before running it.
   */
  async enqueue(jobId: string): Promise<void> {
    const options = { jobId, attempts: 1, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } };
    await this.limit('enqueue a job', this.queue.add(BACKUP_JOB, { jobId }, options));
  }

  /**
   * Removes a job that no worker has taken yet (an unknown id counts as removed). Returns false when BullMQ
   * refused because a worker holds the job, i.e. it is running.
   */
  async remove(jobId: string): Promise<boolean> {
    return (await this.limit('remove a job', this.queue.remove(jobId))) === 1;
  }

  /** Number of jobs waiting or delayed; also the health check's round trip to Redis. */
  async waitingCount(): Promise<number> {
    return this.limit('count jobs', this.queue.count());
  }

  private limit<T>(operation: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new QueueUnavailableError(operation, this.timeoutMs)), this.timeoutMs);
    });
    work.catch(() => undefined); // a late failure after the timeout must not become an unhandled rejection
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }
}
