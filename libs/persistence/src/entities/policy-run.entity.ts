import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import { PolicyEntity } from './policy.entity';

export const POLICY_RUN_STATES = ['running', 'succeeded', 'partial', 'failed', 'skipped'] as const;
export type PolicyRunState = (typeof POLICY_RUN_STATES)[number];

/** What a run did with one selected VM. */
export interface PolicyRunVm {
  vmId: string;
  vmName: string;
  /**
   * waiting: for a concurrency slot or a retry; started/succeeded/failed: its backup job(s);
   * overlap: the VM still had a queued or running backup; outside-window: not started inside the backup window.
   */
  outcome: 'waiting' | 'started' | 'succeeded' | 'failed' | 'overlap' | 'outside-window';
  /** Backup jobs of this run for the VM, oldest first (one per attempt). */
  jobIds: string[];
  message?: string;
  /** Restore points removed by the retention that ran after the success. */
  pruned?: number;
}

/**
 * One run of a policy: a scheduler tick or a run-now. (policyId, tickAt) is unique, so a tick delivered to
 * several workers runs once.
 */
@Entity('policy_runs')
@Index('IDX_policy_runs_policyId_tickAt', ['policyId', 'tickAt'], { unique: true })
export class PolicyRunEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 36 }) policyId!: string;
  @ManyToOne(() => PolicyEntity, { onDelete: 'CASCADE' }) @JoinColumn({ name: 'policyId', foreignKeyConstraintName: 'FK_policy_runs_policyId' }) policy?: PolicyEntity;
  /** The scheduled time of the tick (the request time for a run-now). */
  @Column({ type: 'datetime' }) tickAt!: Date;
  @Column({ type: 'boolean', default: false }) manual!: boolean;
  @Column({ type: 'varchar', length: 16 }) state!: PolicyRunState;
  @Column({ type: 'simple-json' }) vms!: PolicyRunVm[];
  /** Warnings of the run (VMs in several policies, an empty selection, ...). */
  @Column({ type: 'simple-json' }) warnings!: string[];
  @Column({ type: 'datetime' }) startedAt!: Date;
  @Column({ type: 'datetime', nullable: true }) finishedAt!: Date | null;
}
