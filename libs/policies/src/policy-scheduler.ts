import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Job, Queue } from 'bullmq';
import type { PolicyEntity } from '@vmkeep/persistence';
import { QueueUnavailableError } from '@vmkeep/queue';

/** BullMQ queue of policy runs: one job per scheduler tick or run-now, processed by the workers. */
export const POLICY_QUEUE = 'vmkeep-policies';
/** Job name of a policy run. */
export const POLICY_RUN_JOB = 'policy.run';
/** Injection token of the BullMQ Queue for POLICY_QUEUE. */
export const POLICY_QUEUE_TOKEN = Symbol('POLICY_QUEUE');

export interface PolicyRunPayload {
  policyId: string;
  /** Set for run-now: the request time (ms). Scheduled ticks take their time from the BullMQ job id. */
  requestedAt?: number;
}

const SCHEDULER_PREFIX = 'policy-';
const TIMEOUT_MS = 10_000;

/** Id of a policy's BullMQ job scheduler. */
export function schedulerId(policyId: string): string {
  return `${SCHEDULER_PREFIX}${policyId}`;
}

/**
 * The scheduled time of a policy-run job: BullMQ names a scheduler's jobs `repeat:<schedulerId>:<millis>`, the
 * same for every worker, which is what makes a tick run once; run-now jobs carry their request time.
 */
export function tickTimeOf(job: Pick<Job<PolicyRunPayload>, 'id' | 'data' | 'timestamp'>): Date {
  if (job.data.requestedAt !== undefined) return new Date(job.data.requestedAt);
  const millis = Number(job.id?.slice(job.id.lastIndexOf(':') + 1));
  return new Date(Number.isSafeInteger(millis) && millis > 0 ? millis : job.timestamp);
}

/**
 * Keeps one BullMQ job scheduler per enabled policy (cron pattern + time zone) and none for disabled or deleted
 * ones. Upserting is idempotent, so every worker syncing at start and the API syncing on change agree.
 */
@Injectable()
export class PolicyScheduler {
  private readonly log = new Logger('PolicyScheduler');

  constructor(@Inject(POLICY_QUEUE_TOKEN) private readonly queue: Queue<PolicyRunPayload>) {}

  async sync(policy: Pick<PolicyEntity, 'id' | 'enabled' | 'cron' | 'timeZone'>): Promise<void> {
    if (!policy.enabled) {
      await this.remove(policy.id);
      return;
    }
    await this.limit(
      'schedule a policy',
      this.queue.upsertJobScheduler(
        schedulerId(policy.id),
        { pattern: policy.cron, tz: policy.timeZone },
        {
          name: POLICY_RUN_JOB,
          data: { policyId: policy.id },
          opts: { attempts: 1, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } },
        },
      ),
    );
  }

  async remove(policyId: string): Promise<void> {
    await this.limit('unschedule a policy', this.queue.removeJobScheduler(schedulerId(policyId)));
  }

  /** Makes the schedulers match the policies: upserts every enabled one, removes schedulers of any other. */
  async syncAll(policies: Pick<PolicyEntity, 'id' | 'enabled' | 'cron' | 'timeZone'>[]): Promise<void> {
    for (const policy of policies) await this.sync(policy);
    const wanted = new Set(policies.filter((p) => p.enabled).map((p) => schedulerId(p.id)));
    const existing = await this.limit('list schedules', this.queue.getJobSchedulers(0, -1));
    for (const scheduler of existing) {
      const id = scheduler.id ?? scheduler.key;
      if (id.startsWith(SCHEDULER_PREFIX) && !wanted.has(id)) {
        await this.limit('unschedule a policy', this.queue.removeJobScheduler(id));
        this.log.log(`removed the schedule of policy ${id.slice(SCHEDULER_PREFIX.length)} (no longer enabled)`);
      }
    }
  }

  /** When the scheduler fires next, or null without a schedule. */
  async nextRun(policyId: string): Promise<Date | null> {
    const scheduler = await this.limit('read a schedule', this.queue.getJobScheduler(schedulerId(policyId)));
    return scheduler?.next ? new Date(scheduler.next) : null;
  }

  /** Queues a run of the policy now (outside its schedule); returns the BullMQ job id. */
  async runNow(policyId: string): Promise<string> {
    const requestedAt = Date.now();
    const jobId = `${SCHEDULER_PREFIX}${policyId}-now-${requestedAt}`;
    await this.limit('queue a policy run', this.queue.add(POLICY_RUN_JOB, { policyId, requestedAt }, { jobId, attempts: 1, removeOnComplete: { age: 24 * 3600 } }));
    return jobId;
  }

  /** Redis that does not answer fails the call in bounded time instead of hanging the request. */
  private limit<T>(operation: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new QueueUnavailableError(operation, TIMEOUT_MS)), TIMEOUT_MS);
    });
    work.catch(() => undefined);
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }
}
