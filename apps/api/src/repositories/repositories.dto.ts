import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsNotEmpty, IsOptional, IsString, Matches, MaxLength, MinLength, ValidateNested } from 'class-validator';

export class RepositoryS3Dto {
  @ApiPropertyOptional({ example: 'https://minio.example.com:9000', description: 'S3-compatible server; default: the appliance setting (VMKEEP_S3_ENDPOINT) or AWS' })
  @IsOptional()
  @Matches(/^https?:\/\/[^\s/]+/, { message: 's3.endpoint must be an http:// or https:// URL' })
  @MaxLength(512)
  endpoint?: string;

  @ApiPropertyOptional({ example: 'us-east-1' }) @IsOptional() @IsString() @IsNotEmpty() @MaxLength(64) region?: string;
  @ApiPropertyOptional({ description: 'path-style URLs (endpoint/bucket/key); default true with an endpoint' }) @IsOptional() @IsBoolean() forcePathStyle?: boolean;
  @ApiPropertyOptional() @IsOptional() @IsString() @IsNotEmpty() @MaxLength(256) accessKeyId?: string;

  @ApiPropertyOptional({ format: 'password', writeOnly: true, description: 'Stored sealed; never returned' })
  @IsOptional()
  @IsString()
  @IsNotEmpty()
  @MaxLength(1024)
  secretAccessKey?: string;

  @ApiPropertyOptional({ format: 'password', writeOnly: true }) @IsOptional() @IsString() @IsNotEmpty() @MaxLength(4096) sessionToken?: string;
}

class RepositoryRequestDto {
  @ApiProperty({ example: 'offsite' }) @IsString() @IsNotEmpty() @MaxLength(128) name!: string;

  @ApiProperty({ example: '/srv/vmkeep/offsite', description: 'Absolute folder path on the appliance, or s3://BUCKET/PREFIX' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(1024)
  location!: string;

  @ApiPropertyOptional({ type: RepositoryS3Dto, description: 's3:// locations only' })
  @IsOptional()
  @ValidateNested()
  @Type(() => RepositoryS3Dto)
  s3?: RepositoryS3Dto;
}

export class CreateRepositoryDto extends RepositoryRequestDto {
  @ApiPropertyOptional({ format: 'password', writeOnly: true, description: 'Encrypts the new repository (at least 8 characters); stored sealed, never returned. Losing it loses the data' })
  @IsOptional()
  @IsString()
  @MinLength(8)
  @MaxLength(1024)
  passphrase?: string;
}

export class AttachRepositoryDto extends RepositoryRequestDto {
  @ApiPropertyOptional({ format: 'password', writeOnly: true, description: 'Passphrase of an encrypted repository; stored sealed, never returned' })
  @IsOptional()
  @IsString()
  @IsNotEmpty()
  @MaxLength(1024)
  passphrase?: string;
}

export class RepositoryS3SettingsDto {
  @ApiPropertyOptional() endpoint?: string;
  @ApiProperty() region!: string;
  @ApiProperty() forcePathStyle!: boolean;
  @ApiPropertyOptional() accessKeyId?: string;
}

export class RepositoryDto {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ description: 'Folder path or s3://BUCKET/PREFIX' }) location!: string;
  @ApiProperty({ enum: ['folder', 's3'] }) kind!: 'folder' | 's3';
  @ApiProperty() encrypted!: boolean;
  @ApiProperty({ description: 'Backups go here unless a policy or request names another repository' }) isDefault!: boolean;
  @ApiProperty({ type: RepositoryS3SettingsDto, nullable: true }) s3!: RepositoryS3SettingsDto | null;
  @ApiProperty({ description: 'Restore points this appliance knows in the repository' }) pointCount!: number;
  @ApiProperty({ description: 'Bytes those points added (compressed new chunks; 0 for imported points)' }) storedBytes!: number;
  @ApiProperty() createdAt!: Date;
}

export class AttachResultDto {
  @ApiProperty({ type: RepositoryDto }) repository!: RepositoryDto;
  @ApiProperty({ description: 'Restore points imported from the repository manifests' }) imported!: number;
  @ApiProperty({ description: 'Points already known' }) skipped!: number;
  @ApiProperty({ description: 'VMs created as detached inventory entries (their host is not registered)' }) vmsCreated!: number;
}
