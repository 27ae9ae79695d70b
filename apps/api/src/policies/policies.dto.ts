import { ApiProperty, ApiPropertyOptional, PartialType } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  IsUUID,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateNested,
} from 'class-validator';
import { POLICY_RUN_STATES, type PolicyRunState, type PolicyRunVm, type QuiesceMode } from '@vmkeep/persistence';
import { QUIESCE_MODES, WEEKDAYS } from '@vmkeep/policies';

const CLOCK = /^([01]?\d|2[0-3]):[0-5]\d$/;
const CLOCK_MESSAGE = '$property must be HH:MM (24 h)';

export class WeeklyDto {
  @ApiProperty({ example: ['mon', 'thu'], enum: WEEKDAYS, isArray: true })
  @IsArray()
  @IsIn(WEEKDAYS, { each: true })
  days!: string[];

  @ApiProperty({ example: '22:30' })
  @Matches(CLOCK, { message: CLOCK_MESSAGE })
  at!: string;
}

/** Exactly one of cron, daily or weekly. */
export class ScheduleDto {
  @ApiPropertyOptional({ example: '0 30 22 * * *', description: '5 fields, or 6 with seconds first' })
  @IsOptional()
  @IsString()
  @MaxLength(128)
  cron?: string;

  @ApiPropertyOptional({ example: '22:30', description: 'every day at HH:MM' })
  @IsOptional()
  @Matches(CLOCK, { message: CLOCK_MESSAGE })
  daily?: string;

  @ApiPropertyOptional({ type: WeeklyDto })
  @IsOptional()
  @ValidateNested()
  @Type(() => WeeklyDto)
  weekly?: WeeklyDto;

  @ApiPropertyOptional({ example: 'Europe/Berlin', default: 'UTC' })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  timeZone?: string;
}

export class WindowDto {
  @ApiProperty({ example: '22:00' }) @Matches(CLOCK, { message: CLOCK_MESSAGE }) start!: string;
  @ApiProperty({ example: '06:00', description: 'before start: the window crosses midnight' }) @Matches(CLOCK, { message: CLOCK_MESSAGE }) end!: string;
}

const names = (description: string) => [
  ApiPropertyOptional({ type: [String], description }),
  IsOptional(),
  IsArray(),
  ArrayMaxSize(500),
  IsString({ each: true }),
  MinLength(1, { each: true }),
  MaxLength(255, { each: true }),
];
const apply = (decorators: PropertyDecorator[]): PropertyDecorator => (target, key) => decorators.forEach((d) => d(target, key));

export class TagCriterionDto {
  @ApiProperty({ example: 'env' }) @IsString() @MinLength(1) @MaxLength(255) category!: string;
  @ApiProperty({ example: 'prod' }) @IsString() @MinLength(1) @MaxLength(255) name!: string;
}

export class AttributeCriterionDto {
  @ApiProperty({ example: 'owner' }) @IsString() @MinLength(1) @MaxLength(255) name!: string;
  @ApiProperty({ example: 'web-*', description: 'value glob (* and ?), case-insensitive' }) @IsString() @MinLength(1) @MaxLength(1024) value!: string;
}

const criteria = (type: new () => object, description: string) => [
  ApiPropertyOptional({ type: [type], description }),
  IsOptional(),
  IsArray(),
  ArrayMaxSize(500),
  ValidateNested({ each: true }),
  Type(() => type),
];

export class SelectionDto {
  @ApiPropertyOptional({ type: [String], format: 'uuid' }) @IsOptional() @IsArray() @IsUUID('all', { each: true, message: '$property must hold VM ids (UUIDs)' }) vmIds?: string[];
  @apply(names('VM name globs (* and ?), case-insensitive')) namePatterns?: string[];
  @apply(names('cluster names')) clusters?: string[];
  @apply(names('ESXi host names or registered host names')) hosts?: string[];
  @apply(names('datacenter names')) datacenters?: string[];
  @apply(names('VM folder inventory paths, e.g. /DC0/vm/prod (subfolders included)')) folders?: string[];
  @apply(names('resource pool names, or inventory paths /DC0/host/C0/Resources/prod (child pools included)')) resourcePools?: string[];
  @apply(criteria(TagCriterionDto, 'vSphere tags (category and tag name)')) tags?: TagCriterionDto[];
  @apply(criteria(AttributeCriterionDto, 'custom attributes: name and value glob')) customAttributes?: AttributeCriterionDto[];
  @ApiPropertyOptional({ type: [String], format: 'uuid' }) @IsOptional() @IsArray() @IsUUID('all', { each: true, message: '$property must hold VM ids (UUIDs)' }) excludeVmIds?: string[];
  @apply(names('VM name globs never selected')) excludePatterns?: string[];
}

const count = (): PropertyDecorator[] => [ApiPropertyOptional({ minimum: 0 }), IsOptional(), IsInt(), Min(0), Max(100000)];

export class RetentionDto {
  @apply(count()) keepLast?: number;
  @apply(count()) keepHourly?: number;
  @apply(count()) keepDaily?: number;
  @apply(count()) keepWeekly?: number;
  @apply(count()) keepMonthly?: number;
  @apply(count()) keepYearly?: number;
}

const limit = (): PropertyDecorator[] => [ApiPropertyOptional({ minimum: 1 }), IsOptional(), IsInt(), Min(1), Max(1000)];

export class ConcurrencyDto {
  @apply(limit()) global?: number;
  @apply(limit()) perHost?: number;
  @apply(limit()) perDatastore?: number;
}

export class CreatePolicyDto {
  @ApiProperty({ example: 'nightly-web' }) @IsString() @MinLength(1) @MaxLength(128) name!: string;
  @ApiPropertyOptional({ default: true }) @IsOptional() @IsBoolean() enabled?: boolean;
  @ApiProperty({ type: ScheduleDto }) @ValidateNested() @Type(() => ScheduleDto) schedule!: ScheduleDto;
  @ApiPropertyOptional({ type: WindowDto, nullable: true }) @IsOptional() @ValidateNested() @Type(() => WindowDto) window?: WindowDto | null;
  @ApiPropertyOptional({ type: SelectionDto }) @IsOptional() @ValidateNested() @Type(() => SelectionDto) selection?: SelectionDto;
  @ApiPropertyOptional({ type: RetentionDto, description: 'default { keepLast: 7 }' }) @IsOptional() @ValidateNested() @Type(() => RetentionDto) retention?: RetentionDto;
  @ApiPropertyOptional({ enum: QUIESCE_MODES, default: 'try' }) @IsOptional() @IsIn(QUIESCE_MODES) quiesce?: QuiesceMode;
  @ApiPropertyOptional({ default: true, description: 'changed block tracking' }) @IsOptional() @IsBoolean() cbt?: boolean;
  @ApiPropertyOptional({ default: 0, description: 'higher first when policies compete for slots' }) @IsOptional() @IsInt() @Min(-1000) @Max(1000) priority?: number;
  @ApiPropertyOptional({ type: ConcurrencyDto }) @IsOptional() @ValidateNested() @Type(() => ConcurrencyDto) concurrency?: ConcurrencyDto;
  @ApiPropertyOptional({ default: 0 }) @IsOptional() @IsInt() @Min(0) @Max(10) retries?: number;
  @ApiPropertyOptional({ default: 60 }) @IsOptional() @IsInt() @Min(1) @Max(86400) retryBackoffSeconds?: number;
  @ApiPropertyOptional({ nullable: true, type: String, format: 'uuid', description: 'repository the backups go to; null = the default repository' })
  @IsOptional() @IsUUID() repositoryId?: string | null;
}

export class UpdatePolicyDto extends PartialType(CreatePolicyDto) {}

export class PolicyDto {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty() enabled!: boolean;
  @ApiProperty({ example: '0 30 22 * * *' }) cron!: string;
  @ApiProperty({ example: 'UTC' }) timeZone!: string;
  @ApiProperty({ type: Object, description: 'the schedule as given' }) schedule!: Record<string, unknown>;
  @ApiProperty({ type: WindowDto, nullable: true }) window!: WindowDto | null;
  @ApiProperty({ type: SelectionDto }) selection!: SelectionDto;
  @ApiProperty({ type: RetentionDto }) retention!: RetentionDto;
  @ApiProperty({ enum: QUIESCE_MODES }) quiesce!: QuiesceMode;
  @ApiProperty() cbt!: boolean;
  @ApiProperty() priority!: number;
  @ApiProperty({ type: ConcurrencyDto }) concurrency!: ConcurrencyDto;
  @ApiProperty() retries!: number;
  @ApiProperty() retryBackoffSeconds!: number;
  @ApiProperty({ nullable: true, type: String, description: 'repository the backups go to; null = the default' }) repositoryId!: string | null;
  @ApiProperty({ nullable: true, type: Date }) nextRunAt!: Date | null;
  @ApiProperty({ type: Object, isArray: true, description: 'VMs selected now: { id, name, reason }' }) vms!: { id: string; name: string; reason: string }[];
  @ApiProperty({ type: Object, isArray: true, description: 'VMs other enabled policies select too' }) overlaps!: { vmId: string; vmName: string; policies: { id: string; name: string }[] }[];
  @ApiProperty({ type: [String] }) warnings!: string[];
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;
}

export class PolicyRunDto {
  @ApiProperty() id!: string;
  @ApiProperty() policyId!: string;
  @ApiProperty({ description: 'scheduled time of the tick (request time of a run-now)' }) tickAt!: Date;
  @ApiProperty() manual!: boolean;
  @ApiProperty({ enum: POLICY_RUN_STATES }) state!: PolicyRunState;
  @ApiProperty({ type: Object, isArray: true, description: '{ vmId, vmName, outcome, jobIds, message?, pruned? }' }) vms!: PolicyRunVm[];
  @ApiProperty({ type: [String] }) warnings!: string[];
  @ApiProperty() startedAt!: Date;
  @ApiProperty({ nullable: true, type: Date }) finishedAt!: Date | null;
}

export class RunNowDto {
  @ApiProperty() policyId!: string;
  @ApiProperty({ description: 'BullMQ job id of the queued run' }) queueJobId!: string;
}

export class VmProtectionDto {
  @ApiProperty() vmId!: string;
  @ApiProperty() vmName!: string;
  @ApiProperty({ type: Object, isArray: true, description: '{ id, name, enabled, reason, nextRunAt }' }) policies!: { id: string; name: string; enabled: boolean; reason: string; nextRunAt: Date | null }[];
  @ApiProperty({ description: 'more than one enabled policy selects the VM' }) multiplePolicies!: boolean;
  @ApiProperty({ type: [String] }) warnings!: string[];
  @ApiProperty({ nullable: true, type: Date }) lastSuccessAt!: Date | null;
  @ApiProperty({ nullable: true, type: String }) lastSuccessJobId!: string | null;
  @ApiProperty({ nullable: true, type: Date }) nextRunAt!: Date | null;
  @ApiProperty() restorePointCount!: number;
  @ApiProperty({ description: 'bytes its restore points added to the repository' }) storedBytes!: number;
}
