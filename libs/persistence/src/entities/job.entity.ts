import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import type { JobDiskFigures, JobState, JobType } from '@vmkeep/contracts';
import { bigintToNumber } from './columns';

/** Kept here too: the entities and their users take it from @vmkeep/persistence. */
export type { JobDiskFigures } from '@vmkeep/contracts';

@Entity('jobs')
@Index('IDX_jobs_state', ['state'])
export class JobEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 32 }) type!: JobType;
  @Column({ type: 'varchar', length: 16 }) state!: JobState;
  @Column({ type: 'varchar', length: 36, nullable: true }) vmId!: string | null;
  @Column({ type: 'varchar', length: 36, nullable: true }) requestedBy!: string | null;
  /** Job options, e.g. { quiesce: true }. */
  @Column({ type: 'simple-json', nullable: true }) options!: Record<string, unknown> | null;
  /** 0–100. */
  @Column({ type: 'double', default: 0 }) progress!: number;
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) bytesDone!: number;
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) bytesTotal!: number;
  /** Bytes per second over the running job. */
  @Column({ type: 'double', default: 0 }) speed!: number;
  /** Human-readable step ("snapshot", "reading disk 2000", ...). */
  @Column({ type: 'varchar', length: 255, nullable: true }) phase!: string | null;
  @Column({ type: 'text', nullable: true }) error!: string | null;
  @Column({ type: 'boolean', default: false }) cancelRequested!: boolean;
  /** Snapshot the job created and has not removed yet (cleanup after a crash or an unreachable host). */
  @Column({ type: 'varchar', length: 64, nullable: true }) snapshotMoref!: string | null;
  @Column({ type: 'varchar', length: 36, nullable: true }) restorePointId!: string | null;
  /**
   * Backup jobs: the VM's newest restore point (in the job's repository) when the job took its snapshot, i.e.
   * the parent it built on. A failed run with the parent of the next run as its base is an incomplete run after
   * that parent (ids, not timestamps: rows created in the same second are told apart).
   */
  @Column({ type: 'varchar', length: 36, nullable: true }) basePointId!: string | null;
  /** Counters for the finished job, e.g. { newChunks, newBytes, zeroChunks, dedupChunks }. */
  @Column({ type: 'simple-json', nullable: true }) stats!: Record<string, number> | null;
  /** Per-disk figures of a finished backup job (null for other jobs and for jobs before they were kept). */
  @Column({ type: 'simple-json', nullable: true }) disks!: JobDiskFigures[] | null;
  /** Bytes a backup read from the host (sum of `disks[].bytesRead`), for totals without parsing JSON. */
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) bytesRead!: number;
  /** Compressed bytes of the new chunks a backup stored (sum of `disks[].newBytes`). */
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) bytesStored!: number;
  @CreateDateColumn() createdAt!: Date;
  @Column({ type: 'datetime', nullable: true }) startedAt!: Date | null;
  @Column({ type: 'datetime', nullable: true }) finishedAt!: Date | null;
}
