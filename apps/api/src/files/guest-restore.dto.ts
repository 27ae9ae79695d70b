import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsOptional, IsString, IsUUID, MaxLength, MinLength } from 'class-validator';

/** Restore a file or folder of a restore point volume into the running guest of a VM (guest operations). */
export class RestoreToGuestRequestDto {
  @ApiProperty({ description: 'File or folder in the restore point volume ("/" separated)' })
  @IsString()
  @MaxLength(4096)
  path!: string;

  @ApiProperty({ description: 'Folder in the guest the item is restored into (made when missing): "/restore" or "C:\\\\restore"' })
  @IsString()
  @MinLength(1)
  @MaxLength(4096)
  guestPath!: string;

  @ApiProperty({ description: 'Guest OS user name' })
  @IsString()
  @MinLength(1)
  @MaxLength(256)
  guestUser!: string;

  @ApiProperty({ description: 'Guest OS password; used for this request only, never stored or logged', format: 'password' })
  @IsString()
  @MaxLength(1024)
  guestPassword!: string;

  @ApiPropertyOptional({ description: 'Target VM id (default: the VM the restore point belongs to)', format: 'uuid' })
  @IsOptional()
  @IsUUID()
  vmId?: string;

  @ApiPropertyOptional({ description: 'Replace files that exist in the guest (folders are merged)', default: false })
  @IsOptional()
  @IsBoolean()
  overwrite?: boolean;
}

export class RestoreToGuestResultDto {
  @ApiProperty({ description: 'Guest path of the restored item' })
  target!: string;
  @ApiProperty() vmId!: string;
  @ApiProperty() folders!: number;
  @ApiProperty() files!: number;
  @ApiProperty() bytes!: number;
  @ApiProperty({ description: 'Entries left out (symlinks, devices, damaged metadata) with the reason' })
  skipped!: { path: string; reason: string }[];
}
