import { ApiProperty, ApiPropertyOptional, OmitType, PartialType } from '@nestjs/swagger';
import { IsBoolean, IsNotEmpty, IsOptional, IsString, IsUrl, Matches, MaxLength } from 'class-validator';

const URL_OPTIONS = { protocols: ['https'], require_protocol: true, require_tld: false };
const URL_MESSAGE = 'url must be an https:// URL of the vCenter or ESXi host';
/** SHA-1 (20 bytes) or SHA-256 (32 bytes) in hex, colons optional. */
const THUMBPRINT = /^(?:(?:[0-9a-f]{2}:?){19}|(?:[0-9a-f]{2}:?){31})[0-9a-f]{2}$/i;

export class CreateHostDto {
  @ApiProperty({ example: 'vcenter-prod' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(128)
  name!: string;

  @ApiProperty({ example: 'https://vcenter.example.com', description: 'Base URL; /sdk is appended' })
  @IsUrl(URL_OPTIONS, { message: URL_MESSAGE })
  @MaxLength(512)
  url!: string;

  @ApiProperty({ example: 'administrator@vsphere.local' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(255)
  username!: string;

  @ApiProperty({ format: 'password', writeOnly: true, description: 'Stored encrypted; never returned' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(1024)
  password!: string;

  @ApiPropertyOptional({ default: false, description: 'Accept any TLS certificate' })
  @IsOptional()
  @IsBoolean()
  insecure?: boolean;

  @ApiPropertyOptional({ nullable: true, type: String, description: 'Pinned SHA-256 or SHA-1 certificate fingerprint (hex, colons optional)' })
  @IsOptional()
  @Matches(THUMBPRINT, { message: 'thumbprint must be a SHA-256 or SHA-1 fingerprint in hex (colons optional)' })
  thumbprint?: string | null;
}

export class UpdateHostDto extends PartialType(CreateHostDto) {}

export class TestConnectionDto extends OmitType(CreateHostDto, ['name'] as const) {}

export class ThumbprintRequestDto {
  @ApiProperty({ example: 'https://vcenter.example.com' })
  @IsUrl(URL_OPTIONS, { message: URL_MESSAGE })
  url!: string;
}

export class ThumbprintDto {
  @ApiProperty({ example: 'AB:CD:...', description: 'SHA-256 fingerprint of the certificate the host presents' })
  thumbprint!: string;
}

export class HostDto {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty() url!: string;
  @ApiProperty() username!: string;
  @ApiProperty() insecure!: boolean;
  @ApiProperty({ nullable: true, type: String }) thumbprint!: string | null;
  @ApiProperty({ nullable: true, type: String, example: 'vcenter' }) apiType!: string | null;
  @ApiProperty({ nullable: true, type: String }) apiVersion!: string | null;
  @ApiProperty({ nullable: true, type: Date }) lastSyncAt!: Date | null;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;
}

export class TestResultDto {
  @ApiProperty({ example: 'VirtualCenter' }) apiType!: string;
  @ApiProperty({ example: '8.0.2.0' }) apiVersion!: string;
  @ApiProperty() fullName!: string;
}

export class SyncResultDto {
  @ApiProperty() hostId!: string;
  @ApiProperty({ description: 'VMs found on the host' }) vms!: number;
  @ApiProperty() disks!: number;
  @ApiProperty() added!: number;
  @ApiProperty() updated!: number;
  @ApiProperty({ description: 'VMs no longer found (marked missing)' }) missing!: number;
  @ApiProperty() syncedAt!: Date;
}
