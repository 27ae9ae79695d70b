import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { JobEntity, PolicyEntity, PolicyRunEntity, RepositoryEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import { PolicyMembership, type Member } from './policy-membership';
import { policyFields, policyInputOf, windowOf, type PolicyInput } from './policy-input';
import { PolicyScheduler } from './policy-scheduler';
import { fullSelection, type SelectableVm } from './selection';
import type { BackupWindow } from './window';

/** A policy as the API shows it: its settings, the VMs it selects now, overlaps with other policies, next run. */
export interface PolicyView extends Omit<PolicyEntity, 'windowStart' | 'windowEnd'> {
  window: BackupWindow | null;
  nextRunAt: Date | null;
  vms: { id: string; name: string; reason: string }[];
  /** VMs of this policy that other enabled policies select too. */
  overlaps: { vmId: string; vmName: string; policies: { id: string; name: string }[] }[];
  warnings: string[];
}

export interface VmProtection {
  vmId: string;
  vmName: string;
  policies: { id: string; name: string; enabled: boolean; reason: string; nextRunAt: Date | null }[];
  /** More than one enabled policy selects the VM. */
  multiplePolicies: boolean;
  warnings: string[];
  lastSuccessAt: Date | null;
  lastSuccessJobId: string | null;
  /** The earliest next run of the enabled policies protecting the VM. */
  nextRunAt: Date | null;
  restorePointCount: number;
  /** Bytes the VM's restore points added to the repository (compressed, new chunks). */
  storedBytes: number;
}

/** Policy CRUD for the API, keeping the BullMQ schedulers in step with every change. */
@Injectable()
export class PoliciesService {
  constructor(
    @InjectRepository(PolicyEntity) private readonly policies: Repository<PolicyEntity>,
    @InjectRepository(PolicyRunEntity) private readonly runs: Repository<PolicyRunEntity>,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    @InjectRepository(JobEntity) private readonly jobs: Repository<JobEntity>,
    @InjectRepository(RestorePointEntity) private readonly points: Repository<RestorePointEntity>,
    private readonly scheduler: PolicyScheduler,
    private readonly membership: PolicyMembership,
  ) {}

  async list(): Promise<PolicyView[]> {
    const all = await this.policies.find({ order: { name: 'ASC' } });
    const inventory = await this.membership.inventory();
    return Promise.all(all.map((p) => this.view(p, all, inventory)));
  }

  async get(id: string): Promise<PolicyView> {
    const policy = await this.entity(id);
    return this.view(policy, await this.policies.find(), await this.membership.inventory());
  }

  async create(input: PolicyInput): Promise<PolicyView> {
    const fields = policyFields(input);
    await this.assertNameFree(fields.name);
    await this.assertRepository(fields.repositoryId);
    const saved = await this.policies.save(this.policies.create(fields));
    try {
      await this.scheduler.sync(saved);
    } catch (err) {
      await this.policies.delete({ id: saved.id });
      throw err;
    }
    return this.get(saved.id);
  }

  /** Applies the given fields on top of the stored policy; the whole result is validated again. */
  async update(id: string, patch: Partial<PolicyInput>): Promise<PolicyView> {
    const current = await this.entity(id);
    const fields = policyFields({ ...policyInputOf(current), ...patch });
    if (fields.name !== current.name) await this.assertNameFree(fields.name);
    if (fields.repositoryId !== current.repositoryId) await this.assertRepository(fields.repositoryId);
    await this.policies.save({ ...current, ...fields });
    await this.scheduler.sync({ ...fields, id });
    return this.get(id);
  }

  async remove(id: string): Promise<void> {
    await this.entity(id);
    await this.scheduler.remove(id);
    await this.policies.delete({ id });
  }

  async runNow(id: string): Promise<{ policyId: string; queueJobId: string }> {
    const policy = await this.entity(id);
    if (!policy.enabled) throw new VmkeepError(`policy ${policy.name} is disabled; enable it first`, 'conflict');
    return { policyId: id, queueJobId: await this.scheduler.runNow(id) };
  }

  /** Runs of the policy, newest first. */
  async history(id: string, limit = 20): Promise<PolicyRunEntity[]> {
    await this.entity(id);
    return this.runs.find({ where: { policyId: id }, order: { tickAt: 'DESC' }, take: limit });
  }

  async protection(vmId: string): Promise<VmProtection> {
    const vm = await this.vms.findOneBy({ id: vmId });
    if (!vm) throw new VmkeepError(`VM ${vmId} not found`, 'not_found');
    const found = await this.membership.policiesOf(vmId);
    const policies = await Promise.all(found.map(async (p) => ({ ...p, nextRunAt: p.enabled ? await this.scheduler.nextRun(p.id) : null })));
    const enabled = policies.filter((p) => p.enabled);
    const lastSuccess = await this.jobs.findOne({ where: { vmId, type: 'backup', state: 'succeeded' }, order: { finishedAt: 'DESC' } });
    const totals = await this.points
      .createQueryBuilder('p')
      .select('COUNT(*)', 'count')
      .addSelect('COALESCE(SUM(p.storedBytes), 0)', 'stored')
      .where('p.vmId = :vmId', { vmId })
      .getRawOne<{ count: number | string; stored: number | string }>();
    const nextRuns = enabled.map((p) => p.nextRunAt).filter((d): d is Date => d !== null);
    return {
      vmId,
      vmName: vm.name,
      policies,
      multiplePolicies: enabled.length > 1,
      warnings: [
        ...(enabled.length > 1 ? [`VM ${vm.name} is in ${enabled.length} enabled policies: ${enabled.map((p) => p.name).join(', ')}`] : []),
        ...(vm.missing ? [`VM ${vm.name} was not found by the last inventory sync; policies skip it`] : []),
      ],
      lastSuccessAt: lastSuccess?.finishedAt ?? null,
      lastSuccessJobId: lastSuccess?.id ?? null,
      nextRunAt: nextRuns.length ? new Date(Math.min(...nextRuns.map((d) => d.getTime()))) : null,
      restorePointCount: Number(totals?.count ?? 0),
      storedBytes: Number(totals?.stored ?? 0),
    };
  }

  private async view(policy: PolicyEntity, all: PolicyEntity[], inventory: SelectableVm[]): Promise<PolicyView> {
    const members: Member[] = this.membership.membersOf(policy, inventory);
    const overlaps: PolicyView['overlaps'] = [];
    const others = all.filter((p) => p.enabled && p.id !== policy.id);
    for (const vm of members) {
      const also = others.filter((o) => this.membership.membersOf(o, [vm]).length > 0);
      if (also.length) overlaps.push({ vmId: vm.id, vmName: vm.name, policies: also.map((o) => ({ id: o.id, name: o.name })) });
    }
    const { windowStart: _s, windowEnd: _e, ...rest } = policy;
    return {
      ...rest,
      selection: fullSelection(policy.selection),
      window: windowOf(policy),
      nextRunAt: policy.enabled ? await this.scheduler.nextRun(policy.id) : null,
      vms: members.map((m) => ({ id: m.id, name: m.name, reason: m.reason })),
      overlaps,
      warnings: [
        ...(policy.enabled && overlaps.length ? overlaps.map((o) => `VM ${o.vmName} is also in ${o.policies.map((p) => `policy ${p.name}`).join(', ')}`) : []),
        ...(members.length === 0 ? ['the selection matches no VM in the inventory'] : []),
      ],
    };
  }

  /** A policy may only name a registered repository (null = the default). */
  private async assertRepository(repositoryId: string | null): Promise<void> {
    if (repositoryId && !(await this.policies.manager.existsBy(RepositoryEntity, { id: repositoryId }))) {
      throw new VmkeepError(`repository ${repositoryId} not found`, 'invalid');
    }
  }

  private async entity(id: string): Promise<PolicyEntity> {
    const policy = await this.policies.findOneBy({ id });
    if (!policy) throw new VmkeepError(`policy ${id} not found`, 'not_found');
    return policy;
  }

  private async assertNameFree(name: string): Promise<void> {
    if (await this.policies.findOneBy({ name })) throw new VmkeepError(`a policy named ${name} already exists`, 'conflict');
  }
}
