import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { bigintToNumber } from './columns';
import type { JobDiskFigures } from './job.entity';

export interface RestorePointDisk {
  deviceKey: number;
  label: string;
  capacityBytes: number;
  fileName: string;
  /** Repository disk key (index name inside the restore point). */
  key: string;
  /** changeId of the disk in the backup's snapshot (changed block tracking), the next incremental's base. */
  changeId?: string;
  /** How the disk was read: only the areas changed since `parentPointId`, or whole. */
  backupMode?: 'full' | 'incremental';
  /** Restore point row the incremental was built on. */
  parentPointId?: string;
  /** Why a full read was done (no parent, CBT reset, disk resized, ...). */
  fullReason?: string;
  /** What the backup job did with this disk (bytes read, changed, stored, dedup ratio, duration, speed). */
  figures?: JobDiskFigures;
}

/** A committed backup of one VM; it exists only once the repository manifest has been written. */
@Entity('restore_points')
@Index('IDX_restore_points_vmId_createdAt', ['vmId', 'createdAt'])
@Index('IDX_restore_points_repositoryId', ['repositoryId'])
export class RestorePointEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 36 }) vmId!: string;
  @Column({ type: 'varchar', length: 36, nullable: true }) jobId!: string | null;
  /** Id of the point inside the repository. */
  @Column({ type: 'varchar', length: 64 }) repositoryPointId!: string;
  /** Location of the repository when the point was written (how points older than `repositoryId` are found). */
  @Column({ type: 'varchar', length: 1024 }) repositoryPath!: string;
  /** The repository (RepositoryEntity) holding the point; null for points written before repositories were rows. */
  @Column({ type: 'varchar', length: 36, nullable: true }) repositoryId!: string | null;
  @Column({ type: 'varchar', length: 16, default: 'backup' }) kind!: 'backup' | 'archive';
  @Column({ type: 'boolean', default: false }) quiesced!: boolean;
  /** Why the point is not quiesced although its job asked for quiescing (quiesce "try" fell back), else null. */
  @Column({ type: 'varchar', length: 255, nullable: true }) quiesceNote!: string | null;
  @Column({ type: 'simple-json' }) disks!: RestorePointDisk[];
  /** Sum of the disks' virtual sizes. */
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) sizeBytes!: number;
  /** Bytes this point added to the repository (compressed, new chunks only). */
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) storedBytes!: number;
  /**
   * The VM's configuration at backup time (guest OS, CPUs, memory, firmware, controllers, disks, NICs), what a
   * full VM restore rebuilds (shape: VmConfig of @vmkeep/vsphere). Null for points taken before it was kept.
   */
  @Column({ type: 'simple-json', nullable: true }) vmConfig!: Record<string, unknown> | null;
  @CreateDateColumn() createdAt!: Date;
}
