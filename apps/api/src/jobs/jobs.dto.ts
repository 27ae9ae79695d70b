import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsOptional, IsUUID } from 'class-validator';
import { JOB_STATES, JOB_TYPES, JobState, JobType } from '@vmkeep/contracts';
import { PageQueryDto } from '../common/paging';

export class BackupRequestDto {
  @ApiPropertyOptional({ default: false, description: 'Quiesce the guest file systems (VMware Tools) for the snapshot' })
  @IsOptional()
  @IsBoolean()
  quiesce?: boolean;

  @ApiPropertyOptional({ format: 'uuid', description: 'Repository to write to (GET /api/repositories); default: the default repository' })
  @IsOptional()
  @IsUUID()
  repositoryId?: string;
}

export class JobsQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ enum: JOB_STATES })
  @IsOptional()
  @IsIn(JOB_STATES)
  state?: JobState;

  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID()
  vmId?: string;

  @ApiPropertyOptional({ enum: JOB_TYPES })
  @IsOptional()
  @IsIn(JOB_TYPES)
  type?: JobType;
}

/** What one disk of a backup job did. */
export class JobDiskDto {
  @ApiProperty({ example: 'disk-2000' }) key!: string;
  @ApiProperty({ example: 'Hard disk 1' }) label!: string;
  @ApiProperty() capacityBytes!: number;
  @ApiProperty({ enum: ['full', 'incremental'], description: 'incremental: only the areas CBT reported changed were read' }) mode!: 'full' | 'incremental';
  @ApiPropertyOptional({ description: 'Why the disk was read whole (no parent point, CBT reset, resized, ...)' }) fullReason?: string;
  @ApiProperty({ description: 'Bytes read from the host' }) bytesRead!: number;
  @ApiProperty({ description: 'Bytes the host reported changed (incremental) or allocated (full)' }) changedBytes!: number;
  @ApiProperty({ description: 'Compressed bytes of the new chunks stored' }) newBytes!: number;
  @ApiProperty() newChunks!: number;
  @ApiProperty() chunks!: number;
  @ApiProperty() zeroChunks!: number;
  @ApiProperty({ description: 'Chunks already in the repository' }) dedupChunks!: number;
  @ApiProperty({ description: 'Share of non-zero chunks already stored, 0-1' }) dedupRatio!: number;
  @ApiProperty() durationMs!: number;
  @ApiProperty({ description: 'Bytes read per second' }) speed!: number;
}

export class JobDto {
  @ApiProperty() id!: string;
  @ApiProperty({ enum: JOB_TYPES }) type!: JobType;
  @ApiProperty({ enum: JOB_STATES }) state!: JobState;
  @ApiProperty({ nullable: true, type: String }) vmId!: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'User id' }) requestedBy!: string | null;
  @ApiProperty({ nullable: true, type: Object, example: { quiesce: true } }) options!: Record<string, unknown> | null;
  @ApiProperty({ description: 'Percent done, 0-100' }) progress!: number;
  @ApiProperty() bytesDone!: number;
  @ApiProperty() bytesTotal!: number;
  @ApiProperty({ description: 'Bytes per second' }) speed!: number;
  @ApiProperty({ nullable: true, type: String, example: 'reading disk 2000' }) phase!: string | null;
  @ApiProperty({ nullable: true, type: String }) error!: string | null;
  @ApiProperty() cancelRequested!: boolean;
  @ApiProperty({ nullable: true, type: String, description: 'Snapshot the job created and has not removed yet' }) snapshotMoref!: string | null;
  @ApiProperty({ nullable: true, type: String }) restorePointId!: string | null;
  @ApiProperty({ nullable: true, type: Object, example: { newChunks: 12, newBytes: 1048576 } }) stats!: Record<string, number> | null;
  @ApiProperty({ nullable: true, type: [JobDiskDto], description: 'Per-disk figures of a finished backup' }) disks!: JobDiskDto[] | null;
  @ApiProperty({ description: 'Bytes a backup read from the hosts' }) bytesRead!: number;
  @ApiProperty({ description: 'Compressed bytes of the new chunks a backup stored' }) bytesStored!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty({ nullable: true, type: Date }) startedAt!: Date | null;
  @ApiProperty({ nullable: true, type: Date }) finishedAt!: Date | null;
}

export class JobPageDto {
  @ApiProperty({ type: [JobDto] }) items!: JobDto[];
  @ApiProperty() total!: number;
  @ApiProperty() page!: number;
  @ApiProperty() pageSize!: number;
}
