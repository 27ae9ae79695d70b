import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/** Which VMs a policy protects; evaluated against the inventory at every run (see libs/policies). */
export interface PolicySelection {
  /** VM ids picked explicitly. */
  vmIds: string[];
  /** Name globs (`*` any run, `?` one character), case-insensitive. */
  namePatterns: string[];
  /** vSphere cluster names. */
  clusters: string[];
  /** ESXi host names, or names of registered hosts (vCenters). */
  hosts: string[];
  /** Datacenter names. */
  datacenters: string[];
  /** Never protected by this policy, even when matched above. */
  excludeVmIds: string[];
  excludePatterns: string[];
}

/** keep-last and GFS counts, as the repository's retention takes them (time zone: the policy's). */
export interface PolicyRetention {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
}

/** Most backup jobs at once; each limit counts every active backup job of the appliance, not only this policy's. */
export interface PolicyConcurrency {
  global?: number;
  perHost?: number;
  perDatastore?: number;
}

export type QuiesceMode = 'require' | 'try' | 'never';

/** A per-VM backup policy: what to back up, when, how, and how long to keep it. */
@Entity('policies')
export class PolicyEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Index('IDX_policies_name', { unique: true }) @Column({ type: 'varchar', length: 128 }) name!: string;
  @Column({ type: 'boolean', default: true }) enabled!: boolean;
  /** Cron pattern (5 fields, or 6 with seconds first) the schedule compiles to. */
  @Column({ type: 'varchar', length: 128 }) cron!: string;
  /** IANA time zone of the schedule, the window and the retention periods. */
  @Column({ type: 'varchar', length: 64 }) timeZone!: string;
  /** The schedule as the user gave it ({ cron } | { daily } | { weekly }), for display. */
  @Column({ type: 'simple-json' }) schedule!: Record<string, unknown>;
  /** Backup window "HH:MM" to "HH:MM" in timeZone (may cross midnight); null = any time. */
  @Column({ type: 'varchar', length: 5, nullable: true }) windowStart!: string | null;
  @Column({ type: 'varchar', length: 5, nullable: true }) windowEnd!: string | null;
  @Column({ type: 'simple-json' }) selection!: PolicySelection;
  @Column({ type: 'simple-json' }) retention!: PolicyRetention;
  @Column({ type: 'varchar', length: 16, default: 'try' }) quiesce!: QuiesceMode;
  @Column({ type: 'boolean', default: true }) cbt!: boolean;
  /** Higher first when policies compete for concurrency slots. */
  @Column({ type: 'int', default: 0 }) priority!: number;
  @Column({ type: 'simple-json' }) concurrency!: PolicyConcurrency;
  /** Extra attempts after a failed backup of a VM within one run. */
  @Column({ type: 'int', default: 0 }) retries!: number;
  /** Wait before the first retry; doubles for each further one. */
  @Column({ type: 'int', default: 60 }) retryBackoffSeconds!: number;
  @CreateDateColumn() createdAt!: Date;
  @UpdateDateColumn() updatedAt!: Date;
}
