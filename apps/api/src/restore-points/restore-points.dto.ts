import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsUUID } from 'class-validator';
import { DISK_EXPORT_FORMATS, type DiskExportFormat } from '@vmkeep/restore';

export class RestorePointsQueryDto {
  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID()
  vmId?: string;
}

export class RestorePointDiskDto {
  @ApiProperty({ description: 'Repository disk key: use it in /disks/{key}/raw' }) key!: string;
  @ApiProperty() deviceKey!: number;
  @ApiProperty() label!: string;
  @ApiProperty() capacityBytes!: number;
  @ApiProperty() fileName!: string;
}

export class RestorePointDto {
  @ApiProperty() id!: string;
  @ApiProperty() vmId!: string;
  @ApiProperty({ nullable: true, type: String, description: 'Name of the VM; null once its host was removed' }) vmName!: string | null;
  @ApiProperty({ nullable: true, type: String }) jobId!: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'Repository holding the point (GET /api/repositories); null for points older than repositories' }) repositoryId!: string | null;
  @ApiProperty({ enum: ['backup', 'archive'] }) kind!: 'backup' | 'archive';
  @ApiProperty() quiesced!: boolean;
  @ApiProperty({ nullable: true, type: String, description: 'why the point is crash-consistent although quiescing was asked for' }) quiesceNote!: string | null;
  @ApiProperty({ type: [RestorePointDiskDto] }) disks!: RestorePointDiskDto[];
  @ApiProperty({ description: 'Sum of the virtual disk sizes' }) sizeBytes!: number;
  @ApiProperty({ description: 'Bytes this point added to the repository' }) storedBytes!: number;
  @ApiProperty() createdAt!: Date;
}

export class DiskExportQueryDto {
  @ApiProperty({
    enum: DISK_EXPORT_FORMATS,
    description: 'vmdk-stream: VMDK streamOptimized (compressed, chunked); vhdx: dynamic VHDX; raw: the bytes as they are',
  })
  @IsIn(DISK_EXPORT_FORMATS)
  format!: DiskExportFormat;
}
