import { Inject, Injectable, Logger, Module, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Worker, type Job } from 'bullmq';
import { Repository } from 'typeorm';
import { PolicyEntity } from '@vmkeep/persistence';
import { POLICY_QUEUE, POLICY_RUN_JOB, PoliciesModule, PolicyRunner, PolicyScheduler, tickTimeOf, type PolicyRunPayload } from '@vmkeep/policies';
import { REDIS_OPTIONS, type RedisConnectionOptions } from '@vmkeep/queue';
import { WebhookNotifier, WebhooksWorkerModule } from './webhooks/webhooks.module';

/** Policy runs one worker process handles at once (each mostly waits for its backup jobs). */
const RUN_CONCURRENCY = 4;
/** How often each worker re-syncs the schedulers with the policies (the API also syncs on every change). */
const RESYNC_MS = 60_000;

/**
 * The scheduling side of a worker process: syncs the BullMQ job schedulers with the policies at start (and every
 * minute), and processes the policy-run jobs they produce. A tick is one BullMQ job, so with several worker
 * processes exactly one of them runs it; PolicyRunner also records the tick as unique in the database.
 */
@Injectable()
export class PolicyWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly log = new Logger(PolicyWorker.name);
  private worker?: Worker<PolicyRunPayload>;
  private resync?: NodeJS.Timeout;

  constructor(
    @Inject(REDIS_OPTIONS) private readonly connection: RedisConnectionOptions,
    @InjectRepository(PolicyEntity) private readonly policies: Repository<PolicyEntity>,
    private readonly scheduler: PolicyScheduler,
    private readonly runner: PolicyRunner,
    private readonly webhooks: WebhookNotifier,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.sync();
    this.resync = setInterval(() => void this.sync().catch((err: unknown) => this.log.warn(`schedule sync failed: ${String(err)}`)), RESYNC_MS);
    this.resync.unref();
    this.worker = new Worker<PolicyRunPayload>(POLICY_QUEUE, (job, _token, signal) => this.process(job, signal), {
      connection: this.connection,
      concurrency: RUN_CONCURRENCY,
      maxStalledCount: 1,
    });
    this.worker.on('error', (err) => this.log.error(`queue error: ${err.message}`));
    await this.worker.waitUntilReady();
    this.log.log(`processing ${POLICY_QUEUE} with concurrency ${RUN_CONCURRENCY}`);
  }

  /**
   * Does not wait for running policy runs (they wait for backups that may take hours): their BullMQ jobs stall,
   * and another worker resumes each run from the state recorded in its row.
   */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.resync);
    await this.worker?.close(true);
  }

  private async sync(): Promise<void> {
    await this.scheduler.syncAll(await this.policies.find());
  }

  private async process(job: Job<PolicyRunPayload>, signal?: AbortSignal): Promise<string> {
    if (job.name !== POLICY_RUN_JOB) throw new Error(`no handler for job name "${job.name}" on ${POLICY_QUEUE}`);
    const run = await this.runner.run(job.data.policyId, tickTimeOf(job), job.data.requestedAt !== undefined, signal);
    if (run?.finishedAt) await this.webhooks.policyRunFinished(run);
    return run ? `${run.id}: ${run.state}` : 'not run';
  }
}

/** Registered once in WorkerModule. */
@Module({ imports: [PoliciesModule, WebhooksWorkerModule], providers: [PolicyWorker] })
export class PolicyWorkerModule {}
