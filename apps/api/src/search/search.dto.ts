import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, IsUUID, Length, Max, Min } from 'class-validator';

const toBool = ({ value }: { value: unknown }) => (value === 'true' || value === '1' ? true : value === 'false' || value === '0' ? false : value);
const toInt = ({ value }: { value: unknown }) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value);

export class FileSearchQueryDto {
  @ApiProperty({
    description: 'Glob (`*` within a name, `**` across folders, `?`, `[a-z]`, `[!x]`) or, without those, a substring. ' +
      'Matched against the file name, or the whole path when it contains "/".',
    example: '*.conf',
  })
  @IsString()
  @Length(1, 1024)
  q!: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'Only restore points of this VM (default: every VM)' })
  @IsOptional()
  @IsUUID()
  vm?: string;

  @ApiPropertyOptional({ default: true, description: 'Case-insensitive matching' })
  @IsOptional()
  @Transform(toBool)
  @IsBoolean()
  ignoreCase?: boolean;

  @ApiPropertyOptional({ enum: ['file', 'directory', 'symlink', 'other'] })
  @IsOptional()
  @IsIn(['file', 'directory', 'symlink', 'other'])
  type?: 'file' | 'directory' | 'symlink' | 'other';

  @ApiPropertyOptional({ default: 1000, minimum: 1, maximum: 10000, description: 'Most paths returned' })
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(10000)
  limit?: number;
}

export class FileSearchPointDto {
  @ApiProperty({ description: 'Restore point id' }) id!: string;
  @ApiProperty() createdAt!: Date;
}

export class FileVersionDto {
  @ApiProperty({ enum: ['file', 'directory', 'symlink', 'other'] }) type!: string;
  @ApiProperty() size!: number;
  @ApiProperty({ description: 'Modification time (ISO 8601)' }) mtime!: string;
  @ApiProperty({ type: [FileSearchPointDto], description: 'Restore points holding this version, oldest first' })
  points!: FileSearchPointDto[];
}

export class FileSearchHitDto {
  @ApiProperty() vmId!: string;
  @ApiProperty({ nullable: true, type: String }) vmName!: string | null;
  @ApiProperty({ description: 'Disk key and partition index, e.g. "disk-2000:1"' }) volume!: string;
  @ApiProperty() path!: string;
  @ApiProperty({ type: [FileVersionDto] }) versions!: FileVersionDto[];
}

export class UnavailableRepositoryDto {
  @ApiProperty({ nullable: true, type: String, description: 'Repository id (null for restore points recorded before repositories had ids)' })
  id!: string | null;
  @ApiProperty({ nullable: true, type: String }) name!: string | null;
  @ApiProperty({ description: 'Folder or s3://BUCKET/PREFIX' }) location!: string;
  @ApiProperty({ description: 'Why it could not be searched (never holds a passphrase or key)' }) reason!: string;
  @ApiProperty({ description: 'Restore points of the search that lie in it and were not searched' }) points!: number;
}

export class FileSearchResultDto {
  @ApiProperty({ type: [FileSearchHitDto] }) hits!: FileSearchHitDto[];
  @ApiProperty({ description: 'More paths matched than `limit`' }) truncated!: boolean;
  @ApiProperty({ description: 'Restore points searched' }) pointsSearched!: number;
  @ApiProperty({ type: [String], description: 'Restore points without a file index (indexing off or failed)' })
  unindexedPoints!: string[];
  @ApiProperty({
    type: [UnavailableRepositoryDto],
    description: 'Repositories that could not be opened or read (folder gone, storage unreachable, passphrase): ' +
      'the others were searched; their points are not in the hits',
  })
  unavailableRepositories!: UnavailableRepositoryDto[];
}
