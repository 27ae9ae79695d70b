import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, IsUUID, MaxLength } from 'class-validator';
import { RestorePointDto } from '../restore-points/restore-points.dto';

export class VmsQueryDto {
  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID()
  hostId?: string;

  @ApiPropertyOptional({ description: 'Part of the VM name' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  name?: string;
}

export class VmDiskDto {
  @ApiProperty() deviceKey!: number;
  @ApiProperty() label!: string;
  @ApiProperty() capacityBytes!: number;
  @ApiProperty({ example: '[datastore1] web/web.vmdk' }) fileName!: string;
  @ApiProperty({ nullable: true, type: String }) datastore!: string | null;
  @ApiProperty({ nullable: true, type: String }) diskMode!: string | null;
}

export class VmDto {
  @ApiProperty() id!: string;
  @ApiProperty() hostId!: string;
  @ApiProperty({ example: 'vm-42' }) moref!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ nullable: true, type: String }) instanceUuid!: string | null;
  @ApiProperty({ nullable: true, type: String }) powerState!: string | null;
  @ApiProperty({ nullable: true, type: String }) toolsStatus!: string | null;
  @ApiProperty({ nullable: true, type: String }) guestId!: string | null;
  @ApiProperty({ nullable: true, type: String }) datacenter!: string | null;
  @ApiProperty({ nullable: true, type: String }) cluster!: string | null;
  @ApiProperty({ nullable: true, type: String }) esxHost!: string | null;
  @ApiProperty({ nullable: true, type: String, example: '/DC0/vm/prod' }) folderPath!: string | null;
  @ApiProperty({ nullable: true, type: String, example: '/DC0/host/C0/Resources/gold' }) resourcePool!: string | null;
  @ApiProperty({ nullable: true, type: Object, isArray: true, description: 'vSphere tags { category, name }; null when the host has no tagging service' })
  tags!: { category: string; name: string }[] | null;
  @ApiProperty({ nullable: true, type: Object, description: 'custom attributes by name' }) customAttributes!: Record<string, string> | null;
  @ApiProperty({ description: 'The last inventory sync did not find the VM' }) missing!: boolean;
  @ApiProperty({ nullable: true, type: Date }) lastSeenAt!: Date | null;
  @ApiProperty({ description: 'Number of virtual disks found by the last sync' }) diskCount!: number;
  @ApiProperty({ description: 'Sum of the virtual disk sizes in bytes' }) capacityBytes!: number;
}

export class VmDetailDto extends VmDto {
  @ApiProperty({ type: [VmDiskDto] }) disks!: VmDiskDto[];
  @ApiProperty({ type: RestorePointDto, nullable: true }) lastRestorePoint!: RestorePointDto | null;
}
