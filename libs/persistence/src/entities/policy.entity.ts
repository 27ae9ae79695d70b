import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/** A vSphere tag: category name and tag name (case-insensitive). */
export interface PolicyTagCriterion {
  category: string;
  name: string;
}

/** A custom attribute: its name (case-insensitive) and a value glob (`*` any run, `?` one character). */
export interface PolicyAttributeCriterion {
  name: string;
  value: string;
}

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
  /** VM folder inventory paths ("/DC0/vm/prod"); a folder selects the VMs in it and in its subfolders. */
  folders?: string[];
  /** Resource pools: a name ("prod"), or an inventory path prefix ("/DC0/host/C0/Resources/prod"). */
  resourcePools?: string[];
  /** vSphere tags: a VM carrying any of them is selected. */
  tags?: PolicyTagCriterion[];
  /** Custom attributes: a VM whose attribute `name` has a value matching the glob `value` is selected. */
  customAttributes?: PolicyAttributeCriterion[];
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
  /** Repository (RepositoryEntity) the policy's backups go to; null = the appliance's default repository. */
  @Column({ type: 'varchar', length: 36, nullable: true }) repositoryId!: string | null;
  @CreateDateColumn() createdAt!: Date;
  @UpdateDateColumn() updatedAt!: Date;
}
