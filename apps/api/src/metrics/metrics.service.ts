import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { BACKUP_QUEUE, FINAL_JOB_STATES, RESTORE_QUEUE, WEBHOOK_QUEUE } from '@vmkeep/contracts';
import { JobEntity, PolicyRunEntity, RestorePointEntity, WebhookDeliveryEntity } from '@vmkeep/persistence';
import { POLICY_QUEUE } from '@vmkeep/policies';
import { REDIS_OPTIONS, type RedisConnectionOptions } from '@vmkeep/queue';
import { Queue } from 'bullmq';
import { In, IsNull, Not, Repository } from 'typeorm';
import { PrometheusText } from './prometheus';

/** Upper bounds (seconds) of the job duration histogram: 1 s … 1 day. */
export const DURATION_BUCKETS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];
const QUEUES = [BACKUP_QUEUE, RESTORE_QUEUE, POLICY_QUEUE, WEBHOOK_QUEUE];
const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed'] as const;
/** A queue count that does not come back within this is left out (Redis down must not hang a scrape). */
const QUEUE_TIMEOUT_MS = 2000;

type CountRow = Record<string, string | number | null>;

/**
 * Builds the GET /metrics page from the database (job and policy-run outcomes, bytes, durations, restore points,
 * webhook deliveries) and BullMQ (queue depth). Everything is derived from stored rows, so every API process
 * reports the same values and nothing is lost when a process restarts.
 */
@Injectable()
export class MetricsService implements OnModuleDestroy {
  private readonly log = new Logger(MetricsService.name);
  private readonly queues: Queue[];

  constructor(
    @Inject(REDIS_OPTIONS) connection: RedisConnectionOptions,
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    @InjectRepository(PolicyRunEntity) private readonly runs: Repository<PolicyRunEntity>,
    @InjectRepository(RestorePointEntity) private readonly points: Repository<RestorePointEntity>,
    @InjectRepository(WebhookDeliveryEntity) private readonly deliveries: Repository<WebhookDeliveryEntity>,
  ) {
    this.queues = QUEUES.map((name) => {
      const q = new Queue(name, { connection });
      q.on('error', () => undefined);
      return q;
    });
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
  }

  async render(): Promise<string> {
    const [jobCounts, runCounts, pointCounts, deliveryCounts, bytes, durations, queueDepth] = await Promise.all([
      this.jobs.createQueryBuilder('j').select('j.type', 'type').addSelect('j.state', 'state').addSelect('COUNT(*)', 'n').groupBy('j.type').addGroupBy('j.state').getRawMany<CountRow>(),
      this.runs.createQueryBuilder('r').select('r.state', 'state').addSelect('COUNT(*)', 'n').groupBy('r.state').getRawMany<CountRow>(),
      this.points.createQueryBuilder('p').select('p.kind', 'kind').addSelect('COUNT(*)', 'n').addSelect('SUM(p.storedBytes)', 'stored').addSelect('SUM(p.sizeBytes)', 'size').groupBy('p.kind').getRawMany<CountRow>(),
      this.deliveries.createQueryBuilder('d').select('d.state', 'state').addSelect('COUNT(*)', 'n').groupBy('d.state').getRawMany<CountRow>(),
      this.jobs.createQueryBuilder('j').select('SUM(j.bytesRead)', 'read').addSelect('SUM(j.bytesStored)', 'stored').where('j.type = :t', { t: 'backup' }).getRawOne<CountRow>(),
      this.jobs.find({
        where: { state: In([...FINAL_JOB_STATES]), startedAt: Not(IsNull()), finishedAt: Not(IsNull()) },
        select: { id: true, type: true, startedAt: true, finishedAt: true },
      }),
      this.queueDepth(),
    ]);

    const final = jobCounts.filter((r) => FINAL_JOB_STATES.includes(String(r.state) as (typeof FINAL_JOB_STATES)[number]));
    const active = jobCounts.filter((r) => !final.includes(r));
    const byType = new Map<string, number[]>();
    for (const j of durations) {
      const seconds = (j.finishedAt!.getTime() - j.startedAt!.getTime()) / 1000;
      if (seconds >= 0) byType.set(j.type, [...(byType.get(j.type) ?? []), seconds]);
    }

    return new PrometheusText()
      .counter('vmkeep_jobs_total', 'Finished jobs by type (backup, restore-vm) and final state (succeeded, failed, cancelled).',
        final.map((r) => ({ labels: { type: String(r.type), state: String(r.state) }, value: num(r.n) })))
      .gauge('vmkeep_jobs_active', 'Jobs not finished yet, by type and state (queued, running).',
        active.map((r) => ({ labels: { type: String(r.type), state: String(r.state) }, value: num(r.n) })))
      .histogram('vmkeep_job_duration_seconds', 'Run time of finished jobs (start to end), by type.', DURATION_BUCKETS,
        [...byType].map(([type, observations]) => ({ labels: { type }, observations })))
      .counter('vmkeep_backup_read_bytes_total', 'Bytes backup jobs read from the hosts.', [{ value: num(bytes?.read) }])
      .counter('vmkeep_backup_stored_bytes_total', 'Compressed bytes of new chunks backup jobs stored in the repository.', [{ value: num(bytes?.stored) }])
      .counter('vmkeep_policy_runs_total', 'Policy runs by state (running, succeeded, partial, failed, skipped).',
        runCounts.map((r) => ({ labels: { state: String(r.state) }, value: num(r.n) })))
      .gauge('vmkeep_restore_points', 'Restore points by kind (backup, archive).',
        pointCounts.map((r) => ({ labels: { kind: String(r.kind) }, value: num(r.n) })))
      .gauge('vmkeep_restore_points_stored_bytes', 'Bytes the listed restore points added to the repository (approximate repository size).',
        pointCounts.map((r) => ({ labels: { kind: String(r.kind) }, value: num(r.stored) })))
      .gauge('vmkeep_restore_points_logical_bytes', 'Sum of the virtual disk sizes of the listed restore points.',
        pointCounts.map((r) => ({ labels: { kind: String(r.kind) }, value: num(r.size) })))
      .gauge('vmkeep_webhook_deliveries', 'Webhook deliveries by state (pending, retrying, delivered, failed).',
        deliveryCounts.map((r) => ({ labels: { state: String(r.state) }, value: num(r.n) })))
      .gauge('vmkeep_queue_jobs', 'BullMQ jobs per queue and state; queues Redis did not answer for are left out.', queueDepth)
      .toString();
  }

  private async queueDepth(): Promise<{ labels: Record<string, string>; value: number }[]> {
    const out: { labels: Record<string, string>; value: number }[] = [];
    await Promise.all(
      this.queues.map(async (q) => {
        try {
          const counts = await withTimeout(q.getJobCounts(...QUEUE_STATES), QUEUE_TIMEOUT_MS);
          for (const state of QUEUE_STATES) out.push({ labels: { queue: q.name, state }, value: counts[state] ?? 0 });
        } catch (err) {
          this.log.warn(`queue ${q.name}: counts unavailable: ${(err as Error).message}`);
        }
      }),
    );
    return out.sort((a, b) => (a.labels.queue + a.labels.state).localeCompare(b.labels.queue + b.labels.state));
  }
}

function num(v: string | number | null | undefined): number {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
