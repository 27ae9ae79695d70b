import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, IsUUID, Matches, Max, Min } from 'class-validator';
import { MAX_TTL_MINUTES, MIGRATE_FORMATS, type MigrateFormat } from '@vmkeep/restore';

export class StartInstantSessionDto {
  @ApiProperty({ format: 'uuid', description: 'Restore point to serve' })
  @IsUUID()
  pointId!: string;

  @ApiPropertyOptional({ description: 'Disk key inside the point; default: its first disk', example: 'disk-2000' })
  @IsOptional()
  @IsString()
  diskKey?: string;

  @ApiPropertyOptional({ default: false, description: 'Writable through a copy-on-write overlay (the backup is never written)' })
  @IsOptional()
  @IsBoolean()
  writable?: boolean;

  @ApiPropertyOptional({ default: 60, minimum: 1, maximum: MAX_TTL_MINUTES, description: 'Lifetime; the session closes (discarding writes) after it' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_TTL_MINUTES)
  ttlMinutes?: number;
}

export class CloseInstantSessionDto {
  @ApiPropertyOptional({ description: 'Migrate to production: file name (no folders) in the appliance\'s migrated/ folder for the merged disk; omitted = discard the overlay' })
  @IsOptional()
  @IsString()
  @Matches(/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/, { message: 'migrateTo must be a plain file name (letters, digits, ".", "_", "-")' })
  migrateTo?: string;

  @ApiPropertyOptional({ enum: MIGRATE_FORMATS, default: 'raw' })
  @IsOptional()
  @IsIn(MIGRATE_FORMATS)
  format?: MigrateFormat;
}

export class InstantSessionDto {
  @ApiProperty() id!: string;
  @ApiProperty() pointId!: string;
  @ApiProperty() diskKey!: string;
  @ApiProperty() writable!: boolean;
  @ApiProperty({ nullable: true, type: String, description: 'nbd://host:port/TOKEN (the token grants access); null for viewers' })
  url!: string | null;
  @ApiProperty() sizeBytes!: number;
  @ApiProperty({ description: 'Bytes written into the overlay so far' }) overlayBytes!: number;
  @ApiProperty({ description: 'NBD clients connected now' }) clients!: number;
  @ApiProperty() createdAt!: string;
  @ApiProperty() expiresAt!: string;
}

export class MigratedDiskDto {
  @ApiProperty({ description: 'Path of the merged disk on the appliance' }) path!: string;
  @ApiProperty({ enum: MIGRATE_FORMATS }) format!: MigrateFormat;
  @ApiProperty() bytes!: number;
}

export class ClosedInstantSessionDto {
  @ApiProperty() id!: string;
  @ApiPropertyOptional({ type: MigratedDiskDto }) migrated?: MigratedDiskDto;
}
