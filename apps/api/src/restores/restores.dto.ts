import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsObject, IsOptional, IsString, Length } from 'class-validator';

export class RestoreVmRequestDto {
  @ApiPropertyOptional({ description: 'Name of the new VM (required unless overwriteOriginal)' })
  @IsOptional()
  @IsString()
  @Length(1, 80)
  name?: string;

  @ApiPropertyOptional({ description: 'Host to place the new VM on' })
  @IsOptional()
  @IsString()
  host?: string;

  @ApiPropertyOptional({ description: 'Cluster (compute resource) to place the new VM in' })
  @IsOptional()
  @IsString()
  cluster?: string;

  @ApiPropertyOptional({ description: 'Resource pool' })
  @IsOptional()
  @IsString()
  resourcePool?: string;

  @ApiPropertyOptional({ description: 'VM folder (default: the datacenter VM folder)' })
  @IsOptional()
  @IsString()
  folder?: string;

  @ApiPropertyOptional({ description: 'Datastore for every disk (default: where each disk was)' })
  @IsOptional()
  @IsString()
  datastore?: string;

  @ApiPropertyOptional({ description: 'Datastore per disk, by device key', example: { '2000': 'ds1' } })
  @IsOptional()
  @IsObject()
  diskDatastores?: Record<string, string>;

  @ApiPropertyOptional({ description: 'Source network name → target network name', example: { 'VM Network': 'DR Network' } })
  @IsOptional()
  @IsObject()
  networkMap?: Record<string, string>;

  @ApiPropertyOptional({ description: 'Thin provisioned disks (default: as backed up)' })
  @IsOptional()
  @IsBoolean()
  thin?: boolean;

  @ApiPropertyOptional({ default: false })
  @IsOptional()
  @IsBoolean()
  powerOn?: boolean;

  @ApiPropertyOptional({ default: false, description: 'Power off the original VM and replace its disks (keeps its identity)' })
  @IsOptional()
  @IsBoolean()
  overwriteOriginal?: boolean;
}

/** Every value of a name map must be a non-empty string. */
export function checkNameMap(map: Record<string, unknown> | undefined, what: string): Record<string, string> | undefined {
  if (!map) return undefined;
  for (const [key, value] of Object.entries(map)) {
    if (typeof value !== 'string' || !value || !key) throw new Error(`${what}: every entry must map a name to a name`);
  }
  return map as Record<string, string>;
}
