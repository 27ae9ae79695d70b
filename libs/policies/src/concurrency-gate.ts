import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { In, Repository } from 'typeorm';
import { JobEntity, VmDiskEntity, VmEntity, type PolicyConcurrency } from '@vmkeep/persistence';
import { POLICY_QUEUE_TOKEN } from './policy-scheduler';

/** Where a VM's backup puts load: its ESXi host (or registered host) and the datastores of its disks. */
export interface VmPlacement {
  host: string;
  datastores: string[];
}

/** The limit a new job would exceed, e.g. "per host esx-1: 2 running, limit 2"; undefined when none. */
export function exceededLimit(limits: PolicyConcurrency, active: VmPlacement[], next: VmPlacement): string | undefined {
  if (limits.global !== undefined && active.length >= limits.global) return `global: ${active.length} active, limit ${limits.global}`;
  if (limits.perHost !== undefined) {
    const onHost = active.filter((a) => a.host === next.host).length;
    if (onHost >= limits.perHost) return `per host ${next.host}: ${onHost} active, limit ${limits.perHost}`;
  }
  if (limits.perDatastore !== undefined) {
    for (const ds of next.datastores) {
      const onDs = active.filter((a) => a.datastores.includes(ds)).length;
      if (onDs >= limits.perDatastore) return `per datastore ${ds}: ${onDs} active, limit ${limits.perDatastore}`;
    }
  }
  return undefined;
}

const LOCK_KEY = 'vmkeep:policies:start-lock';
const LOCK_TTL_MS = 15_000;
const ACQUIRE = "if redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 1 else return 0 end";
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/**
 * Enforces a policy's concurrency limits when its jobs start. Limits count every queued or running backup job of
 * the appliance (whoever created it). Checking and creating happen under one Redis lock shared by all worker
 * processes, so two policy runs cannot both take the last slot.
 */
@Injectable()
export class ConcurrencyGate {
  constructor(
    @Inject(POLICY_QUEUE_TOKEN) private readonly queue: Queue,
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    @InjectRepository(VmDiskEntity) private readonly disks: Repository<VmDiskEntity>,
  ) {}

  async placement(vmIds: string[]): Promise<Map<string, VmPlacement>> {
    if (vmIds.length === 0) return new Map();
    const [vms, disks] = await Promise.all([
      this.vms.findBy({ id: In(vmIds) }),
      this.disks.findBy({ vmId: In(vmIds) }),
    ]);
    return new Map(
      vms.map((vm) => [
        vm.id,
        {
          host: vm.esxHost ?? vm.hostId,
          datastores: [...new Set(disks.filter((d) => d.vmId === vm.id && d.datastore).map((d) => d.datastore!))],
        },
      ]),
    );
  }

  /**
   * Runs `start` under the lock when no limit is exceeded by the VM's job; returns the exceeded limit instead.
   * Returns null when the lock is busy (another run is starting a job): try again shortly.
   */
  async tryStart(limits: PolicyConcurrency, vmId: string, start: () => Promise<void>): Promise<string | undefined | null> {
    const redis = await this.queue.getBackend().client;
    const token = randomUUID();
    redis.defineCommand('vmkeepLockAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    redis.defineCommand('vmkeepLockRelease', { numberOfKeys: 1, lua: RELEASE });
    if (Number(await redis.runCommand('vmkeepLockAcquire', [LOCK_KEY, token, LOCK_TTL_MS])) !== 1) return null;
    try {
      const active = await this.jobs.find({ where: { type: 'backup', state: In(['queued', 'running']) }, select: { id: true, vmId: true } });
      const ids = [...new Set([vmId, ...active.map((j) => j.vmId).filter((id): id is string => id !== null)])];
      const placement = await this.placement(ids);
      const next = placement.get(vmId) ?? { host: 'unknown', datastores: [] };
      const exceeded = exceededLimit(
        limits,
        active.map((j) => placement.get(j.vmId ?? '') ?? { host: 'unknown', datastores: [] }),
        next,
      );
      if (exceeded) return exceeded;
      await start();
      return undefined;
    } finally {
      await redis.runCommand('vmkeepLockRelease', [LOCK_KEY, token]);
    }
  }
}
