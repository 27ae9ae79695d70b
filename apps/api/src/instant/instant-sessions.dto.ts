import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsNotEmpty, IsOptional, IsString, IsUUID, Matches, Max, Min, ValidateNested } from 'class-validator';
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

  @ApiPropertyOptional({
    default: false,
    description: "Decode the whole point into the session's scratch cache in the background (client reads go first), so later reads and migration come from local disk",
  })
  @IsOptional()
  @IsBoolean()
  hydrate?: boolean;

  @ApiPropertyOptional({ default: 60, minimum: 1, maximum: MAX_TTL_MINUTES, description: 'Lifetime; the session closes (discarding writes) after it' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_TTL_MINUTES)
  ttlMinutes?: number;
}

/** Migrate to production onto a datastore: the merged disk becomes FOLDER/FOLDER.vmdk + FOLDER-flat.vmdk. */
export class DatastoreMigrationDto {
  @ApiProperty({ format: 'uuid', description: 'Registered host (vCenter/ESXi) to upload through' })
  @IsUUID()
  hostId!: string;

  @ApiProperty({ example: 'datastore1' })
  @IsString()
  @IsNotEmpty()
  datastore!: string;

  @ApiProperty({ description: 'New folder on the datastore (plain name)', example: 'web01-migrated' })
  @IsString()
  @Matches(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/, { message: 'folder must be a plain name (letters, digits, ".", "_", "-")' })
  folder!: string;

  @ApiPropertyOptional({ default: false, description: 'Mark the disk thin provisioned' })
  @IsOptional()
  @IsBoolean()
  thin?: boolean;

  @ApiPropertyOptional({ enum: ['lsilogic', 'buslogic', 'ide', 'legacyESX'], default: 'lsilogic' })
  @IsOptional()
  @IsIn(['lsilogic', 'buslogic', 'ide', 'legacyESX'])
  adapterType?: 'lsilogic' | 'buslogic' | 'ide' | 'legacyESX';
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

  @ApiPropertyOptional({ type: DatastoreMigrationDto, description: 'Migrate to production onto a datastore instead of a file' })
  @IsOptional()
  @ValidateNested()
  @Type(() => DatastoreMigrationDto)
  datastore?: DatastoreMigrationDto;
}

export class MigrationProgressDto {
  @ApiProperty({ description: 'Where the merged disk goes' }) target!: string;
  @ApiProperty() bytesDone!: number;
  @ApiProperty() bytesTotal!: number;
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
  @ApiProperty({
    enum: ['active', 'closing', 'lost', 'closed', 'expired'],
    description: 'active: served now; closing: writing the merged disk (see migration); lost: its API process stopped (listed until it would have expired)',
  })
  state!: string;
  @ApiPropertyOptional({ type: MigrationProgressDto }) migration?: MigrationProgressDto;
  @ApiProperty({ nullable: true, type: String, description: 'Why a session that is not active ended' }) endReason!: string | null;
}

export class MigratedDiskDto {
  @ApiProperty({ description: 'The file on the appliance, or "[datastore] folder/folder.vmdk"' }) path!: string;
  @ApiProperty({ enum: [...MIGRATE_FORMATS, 'vmfs'] }) format!: string;
  @ApiProperty() bytes!: number;
}

export class ClosedInstantSessionDto {
  @ApiProperty() id!: string;
  @ApiPropertyOptional({ type: MigratedDiskDto }) migrated?: MigratedDiskDto;
}
