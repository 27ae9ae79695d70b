import { Injectable, Optional } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { HostsService } from '@vmkeep/inventory';
import { PolicyEntity, VmEntity } from '@vmkeep/persistence';
import { selectionReason, type SelectableVm } from './selection';

export interface PolicyRef {
  id: string;
  name: string;
  enabled: boolean;
}

/** A policy run syncs a host's inventory first when its last sync is older than this. */
export const INVENTORY_MAX_AGE_MS = 60_000;

/** A VM a policy selects, and why. */
export interface Member extends SelectableVm {
  reason: string;
}

/**
 * Evaluates selections against the inventory as it is now (VMs the last sync did not find are left out). A VM
 * selected by more than one enabled policy is reported by the API and warned about by every run.
 */
@Injectable()
export class PolicyMembership {
  constructor(
    @InjectRepository(PolicyEntity) private readonly policies: Repository<PolicyEntity>,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    @Optional() private readonly hosts?: HostsService,
  ) {}

  /**
   * Syncs every host whose inventory is older than INVENTORY_MAX_AGE_MS, so a run sees new VMs and current
   * folders, pools, tags and attributes (hosts never synced have no inventory to refresh). A host that cannot be
   * synced keeps its stored inventory; one line per such host is returned.
   */
  async refresh(now = new Date()): Promise<string[]> {
    if (!this.hosts) return [];
    const problems: string[] = [];
    for (const host of await this.hosts.list()) {
      if (!host.lastSyncAt || now.getTime() - host.lastSyncAt.getTime() < INVENTORY_MAX_AGE_MS) continue;
      try {
        await this.hosts.sync(host.id);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        problems.push(`inventory of host ${host.name} not refreshed (${why}); selecting from its sync of ${host.lastSyncAt.toISOString()}`);
      }
    }
    return problems;
  }

  /** The VMs selection looks at (one VM with `vmId`), by name. */
  async inventory(vmId?: string): Promise<SelectableVm[]> {
    const where = { missing: false, ...(vmId ? { id: vmId } : {}) };
    const vms = await this.vms.find({ where, relations: { host: true }, order: { name: 'ASC' } });
    return vms.map((v) => ({
      id: v.id,
      name: v.name,
      hostName: v.host?.name ?? null,
      esxHost: v.esxHost,
      cluster: v.cluster,
      datacenter: v.datacenter,
      folderPath: v.folderPath,
      resourcePool: v.resourcePool,
      tags: v.tags,
      customAttributes: v.customAttributes,
    }));
  }

  membersOf(policy: PolicyEntity, inventory: SelectableVm[]): Member[] {
    const members: Member[] = [];
    for (const vm of inventory) {
      const reason = selectionReason(policy.selection, vm);
      if (reason !== undefined) members.push({ ...vm, reason });
    }
    return members;
  }

  /** The policy's VMs now, and for each of them the other enabled policies that select it too. */
  async evaluate(policy: PolicyEntity): Promise<{ members: Member[]; others: Map<string, PolicyRef[]> }> {
    const inventory = await this.inventory();
    const members = this.membersOf(policy, inventory);
    const others = new Map<string, PolicyRef[]>();
    const rest = (await this.policies.findBy({ enabled: true })).filter((p) => p.id !== policy.id);
    for (const other of rest) {
      for (const vm of this.membersOf(other, members)) {
        others.set(vm.id, [...(others.get(vm.id) ?? []), { id: other.id, name: other.name, enabled: other.enabled }]);
      }
    }
    return { members, others };
  }

  /** Every policy (enabled or not) that selects the VM, with the reason. */
  async policiesOf(vmId: string): Promise<(PolicyRef & { reason: string })[]> {
    const [vm] = await this.inventory(vmId);
    if (!vm) return [];
    const found: (PolicyRef & { reason: string })[] = [];
    for (const p of await this.policies.find({ order: { name: 'ASC' } })) {
      const reason = selectionReason(p.selection, vm);
      if (reason !== undefined) found.push({ id: p.id, name: p.name, enabled: p.enabled, reason });
    }
    return found;
  }
}
