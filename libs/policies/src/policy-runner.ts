import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, MoreThan, Not, Repository } from 'typeorm';
import { FINAL_JOB_STATES, VmkeepError } from '@vmkeep/contracts';
import { JobEntity, PolicyEntity, PolicyRunEntity, type PolicyRunState, type PolicyRunVm } from '@vmkeep/persistence';
import { BackupAlreadyActiveError, BackupJobsService } from './backup-jobs.service';
import { ConcurrencyGate } from './concurrency-gate';
import { PolicyMembership } from './policy-membership';
import { PolicyRetentionService } from './policy-retention.service';
import { insideWindow } from './window';
import { windowOf } from './policy-input';

/** Optional injection token: how often a running policy run looks at its jobs (ms, default 1000). */
export const POLICY_RUN_POLL_MS = Symbol('POLICY_RUN_POLL_MS');

type Entry = PolicyRunVm & { retryAt?: string };

/**
 * One policy run (a scheduler tick or run-now), in a worker:
 * 1. records the run; (policyId, tickAt) is unique, so a tick runs once even if delivered twice — a run found
 *    "running" (its worker died) is resumed from its recorded state;
 * 2. selects the VMs from the inventory now (new VMs are picked up), warns about VMs in other policies too;
 * 3. skips, and says so, VMs whose previous backup is still queued or running (overlap);
 * 4. starts one backup job per VM through BackupJobsService, inside the backup window and the concurrency
 *    limits, higher-priority policies first; VMs that cannot start before the window closes are skipped;
 * 5. waits for the jobs; a failure is retried `retries` times after retryBackoffSeconds, doubling;
 * 6. after each success, prunes the VM's restore points with the policy's retention (archives untouched).
 */
@Injectable()
export class PolicyRunner {
  private readonly log = new Logger('PolicyRunner');

  constructor(
    @InjectRepository(PolicyEntity) private readonly policies: Repository<PolicyEntity>,
    @InjectRepository(PolicyRunEntity) private readonly runs: Repository<PolicyRunEntity>,
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    private readonly backupJobs: BackupJobsService,
    private readonly gate: ConcurrencyGate,
    private readonly membership: PolicyMembership,
    private readonly retention: PolicyRetentionService,
    @Optional() @Inject(POLICY_RUN_POLL_MS) private readonly pollMs: number = 1000,
  ) {}

  /** Runs (or resumes) the policy's run for the tick; returns the run row as it ended. */
  async run(policyId: string, tickAt: Date, manual: boolean, signal?: AbortSignal): Promise<PolicyRunEntity | null> {
    const policy = await this.policies.findOneBy({ id: policyId });
    if (!policy) {
      this.log.warn(`tick for policy ${policyId}, which no longer exists: ignored`);
      return null;
    }
    const claimed = await this.claim(policy, tickAt, manual);
    if (!claimed) return null;
    let run = claimed;
    try {
      if (run.vms.length === 0 && run.state === 'running') run = await this.select(policy, run);
      while (run.state === 'running') {
        run = await this.step(policy, run);
        if (run.state !== 'running') break;
        if (signal?.aborted) throw new Error(`interrupted: ${String(signal.reason ?? 'aborted')}`);
        await new Promise((r) => setTimeout(r, this.pollMs));
      }
    } catch (err) {
      // Never leave the run "running": its jobs keep going and are visible in the job list.
      await this.finish(run, run.vms, [...run.warnings, `the run stopped: ${(err as Error).message}`], 'failed').catch(() => undefined);
      throw err;
    }
    this.log.log(`policy ${policy.name} run ${run.id} (${run.tickAt.toISOString()}): ${run.state} — ${summarize(run.vms)}`);
    return run;
  }

  /** Creates the run row, or takes over a run of the same tick left running; null when it already ended. */
  private async claim(policy: PolicyEntity, tickAt: Date, manual: boolean): Promise<PolicyRunEntity | null> {
    // DATETIME columns keep whole seconds on MySQL: the tick is stored (and compared) at that precision.
    const tick = new Date(Math.floor(tickAt.getTime() / 1000) * 1000);
    try {
      return await this.runs.save(
        this.runs.create({ policyId: policy.id, tickAt: tick, manual, state: 'running', vms: [], warnings: [], startedAt: new Date(), finishedAt: null }),
      );
    } catch (err) {
      const existing = await this.runs.findOneBy({ policyId: policy.id, tickAt: tick });
      if (!existing) throw err;
      // A scheduled tick is one BullMQ job, so a second delivery means its first worker died: resume. Two
      // run-now requests within the same second are two jobs for one row: the later one stands down.
      if (existing.state !== 'running' || manual) {
        this.log.warn(`policy ${policy.name}: the tick ${tick.toISOString()} already ran (run ${existing.id}); not again`);
        return null;
      }
      this.log.warn(`policy ${policy.name}: resuming run ${existing.id} of ${tick.toISOString()} (its worker stopped)`);
      return existing;
    }
  }

  private async select(policy: PolicyEntity, run: PolicyRunEntity): Promise<PolicyRunEntity> {
    if (!policy.enabled) return this.finish(run, [], ['the policy is disabled'], 'skipped');
    const warnings: string[] = await this.membership.refresh();
    const { members, others } = await this.membership.evaluate(policy);
    if (members.length === 0) warnings.push('the selection matches no VM');
    const vms: Entry[] = [];
    for (const vm of members) {
      const also = others.get(vm.id);
      if (also?.length) warnings.push(`VM ${vm.name} is also in ${also.map((p) => `policy ${p.name}`).join(', ')}`);
      const active = await this.backupJobs.active(vm.id);
      vms.push(
        active
          ? { vmId: vm.id, vmName: vm.name, outcome: 'overlap', jobIds: [], message: `skipped: its previous backup (job ${active.id}) is still ${active.state}` }
          : { vmId: vm.id, vmName: vm.name, outcome: 'waiting', jobIds: [] },
      );
    }
    for (const w of warnings) this.log.warn(`policy ${policy.name}: ${w}`);
    run.vms = vms;
    run.warnings = warnings;
    return this.runs.save(run);
  }

  /** One pass: collects ended jobs, starts what may start, and finishes the run when nothing is left. */
  private async step(policy: PolicyEntity, run: PolicyRunEntity): Promise<PolicyRunEntity> {
    const now = new Date();
    const vms = run.vms as Entry[];
    const started = vms.filter((v) => v.outcome === 'started');
    const jobs = new Map(
      (await this.jobs.findBy({ id: In(started.map((v) => v.jobIds[v.jobIds.length - 1])) })).map((j) => [j.id, j]),
    );
    for (const entry of started) {
      const job = jobs.get(entry.jobIds[entry.jobIds.length - 1]);
      if (job && !FINAL_JOB_STATES.includes(job.state)) continue;
      if (job?.state === 'succeeded') {
        entry.outcome = 'succeeded';
        delete entry.message;
        await this.prune(policy, entry);
      } else if (entry.jobIds.length <= policy.retries && job?.state !== 'cancelled') {
        const delayS = policy.retryBackoffSeconds * 2 ** (entry.jobIds.length - 1);
        entry.outcome = 'waiting';
        entry.retryAt = new Date(now.getTime() + delayS * 1000).toISOString();
        entry.message = `attempt ${entry.jobIds.length} ${job?.state ?? 'vanished'}: ${job?.error ?? ''}; retry in ${delayS} s`;
      } else {
        entry.outcome = 'failed';
        entry.message = `backup ${job?.state ?? 'job vanished'}${job?.error ? `: ${job.error}` : ''}`;
      }
    }
    const window = windowOf(policy);
    const higherWaiting = await this.higherPriorityWaiting(policy, run.id);
    for (const entry of vms) {
      if (entry.outcome !== 'waiting' || (entry.retryAt && new Date(entry.retryAt) > now)) continue;
      if (!insideWindow(window, policy.timeZone, now)) {
        entry.outcome = 'outside-window';
        entry.message = `not started: outside the backup window ${window!.start}–${window!.end} (${policy.timeZone})`;
        continue;
      }
      if (higherWaiting) {
        entry.message = `waiting: ${higherWaiting} goes first`;
        continue;
      }
      await this.start(policy, run, entry);
    }
    if (vms.some((v) => v.outcome === 'waiting' || v.outcome === 'started')) return this.runs.save(run);
    return this.finish(run, vms, run.warnings, finalState(vms));
  }

  private async start(policy: PolicyEntity, run: PolicyRunEntity, entry: Entry): Promise<void> {
    const options = {
      quiesce: policy.quiesce !== 'never',
      quiesceMode: policy.quiesce,
      cbt: policy.cbt,
      policyId: policy.id,
      policyRunId: run.id,
      ...(policy.repositoryId ? { repositoryId: policy.repositoryId } : {}),
      attempt: entry.jobIds.length + 1,
    };
    try {
      const blocked = await this.gate.tryStart(policy.concurrency, entry.vmId, async () => {
        const { job } = await this.backupJobs.create(entry.vmId, options, null);
        entry.jobIds.push(job.id);
      });
      if (blocked === null) return; // another run holds the start lock: next pass
      if (blocked !== undefined) {
        entry.message = `waiting for a concurrency slot (${blocked})`;
        return;
      }
      entry.outcome = 'started';
      delete entry.retryAt;
      delete entry.message;
    } catch (err) {
      if (err instanceof BackupAlreadyActiveError && entry.jobIds.length === 0) {
        entry.outcome = 'overlap';
        entry.message = `skipped: its previous backup (job ${err.activeJob.id}) is still ${err.activeJob.state}`;
      } else if (err instanceof VmkeepError) {
        entry.outcome = 'failed';
        entry.message = err.message;
      } else {
        throw err;
      }
    }
  }

  private async prune(policy: PolicyEntity, entry: Entry): Promise<void> {
    try {
      const result = await this.retention.pruneVm(entry.vmId, policy.retention, policy.timeZone);
      entry.pruned = result.removed.length;
      if (result.skipped.length) entry.message = `retention left ${result.skipped.length} point(s): ${result.skipped.map((s) => s.reason).join('; ')}`;
    } catch (err) {
      entry.message = `backup succeeded, retention failed: ${(err as Error).message}`;
      this.log.error(`policy ${policy.name}, VM ${entry.vmName}: ${entry.message}`);
    }
  }

  /** Name of a running, higher-priority policy run with VMs waiting to start, if any. */
  private async higherPriorityWaiting(policy: PolicyEntity, runId: string): Promise<string | undefined> {
    const higher = await this.policies.findBy({ priority: MoreThan(policy.priority) });
    if (higher.length === 0) return undefined;
    const running = await this.runs.findBy({ id: Not(runId), state: 'running', policyId: In(higher.map((p) => p.id)) });
    const waiting = running.find((r) => (r.vms as Entry[]).some((v) => v.outcome === 'waiting' && !v.retryAt));
    return waiting && `policy ${higher.find((p) => p.id === waiting.policyId)!.name}`;
  }

  private finish(run: PolicyRunEntity, vms: PolicyRunVm[], warnings: string[], state: PolicyRunState): Promise<PolicyRunEntity> {
    run.vms = vms;
    run.warnings = warnings;
    run.state = state;
    run.finishedAt = new Date();
    return this.runs.save(run);
  }
}

function finalState(vms: PolicyRunVm[]): PolicyRunState {
  const ok = vms.filter((v) => v.outcome === 'succeeded').length;
  if (ok === vms.length) return 'succeeded';
  if (vms.every((v) => v.outcome === 'overlap' || v.outcome === 'outside-window')) return 'skipped';
  if (ok === 0 && vms.every((v) => v.outcome === 'failed')) return 'failed';
  return 'partial';
}

function summarize(vms: PolicyRunVm[]): string {
  const counts = new Map<string, number>();
  for (const v of vms) counts.set(v.outcome, (counts.get(v.outcome) ?? 0) + 1);
  return vms.length === 0 ? 'no VMs' : [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
}
