import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsOptional, IsUUID } from 'class-validator';
import { JOB_STATES, JOB_TYPES, JobState, JobType } from '@vmkeep/contracts';
import { PageQueryDto } from '../common/paging';

export class BackupRequestDto {
  @ApiPropertyOptional({ default: false, description: 'Quiesce the guest file systems (VMware Tools) for the snapshot' })
  @IsOptional()
  @IsBoolean()
  quiesce?: boolean;
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
