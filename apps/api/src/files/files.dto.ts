import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Max, Min } from 'class-validator';
import { MAX_PAGE } from '@vmkeep/restore';

export class GuestPathQueryDto {
  @ApiPropertyOptional({ description: 'Path inside the guest file system ("/" separated; ".." may not leave the root)', default: '/' })
  @IsOptional()
  @IsString()
  path?: string;
}

export class DirQueryDto extends GuestPathQueryDto {
  @ApiPropertyOptional({ minimum: 0, default: 0 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  offset?: number;

  @ApiPropertyOptional({ minimum: 1, maximum: MAX_PAGE, default: 1000 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(MAX_PAGE)
  limit?: number;

  @ApiPropertyOptional({ enum: ['name', 'size', 'mtime'], description: 'Without it: on-disk order (fastest first page)' })
  @IsOptional()
  @IsIn(['name', 'size', 'mtime'])
  sort?: 'name' | 'size' | 'mtime';

  @ApiPropertyOptional({ enum: ['asc', 'desc'], default: 'asc' })
  @IsOptional()
  @IsIn(['asc', 'desc'])
  order?: 'asc' | 'desc';
}

export class ArchiveQueryDto extends GuestPathQueryDto {
  @ApiPropertyOptional({ enum: ['zip', 'tar'], default: 'zip' })
  @IsOptional()
  @IsIn(['zip', 'tar'])
  format?: 'zip' | 'tar';
}
