import { ApiProperty, ApiPropertyOptional, PartialType } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsBoolean, IsOptional, IsString, Matches, MaxLength, MinLength } from 'class-validator';
import { WEBHOOK_DELIVERY_STATES, WEBHOOK_EVENTS, type WebhookDeliveryState, type WebhookEvent } from '@vmkeep/persistence';

const EVENT_PATTERN = /^(\*|[a-z]+(\.[a-z]+)*(\.\*)?)$/;

export class CreateWebhookDto {
  @ApiProperty({ example: 'ops-chat', maxLength: 128 })
  @IsString()
  @MinLength(1)
  @MaxLength(128)
  name!: string;

  @ApiProperty({ example: 'https://hooks.example.com/vmkeep', description: 'http:// or https:// URL the events are POSTed to' })
  @IsString()
  @MaxLength(2048)
  url!: string;

  @ApiProperty({
    example: ['backup.failed', 'restore.*'],
    description: `Events: ${WEBHOOK_EVENTS.join(', ')}; "restore.*" style prefixes and "*" are expanded when saved`,
  })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(20)
  @IsString({ each: true })
  @Matches(EVENT_PATTERN, { each: true, message: 'each event must look like backup.failed, restore.* or *' })
  events!: string[];

  @ApiProperty({ description: 'HMAC-SHA256 key of the X-VMKeep-Signature header (16–256 characters); stored encrypted, never returned' })
  @IsString()
  @MinLength(16)
  @MaxLength(256)
  secret!: string;

  @ApiPropertyOptional({ default: true })
  @IsOptional()
  @IsBoolean()
  enabled?: boolean;
}

export class UpdateWebhookDto extends PartialType(CreateWebhookDto) {}

export class WebhookDto {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty() url!: string;
  @ApiProperty({ enum: WEBHOOK_EVENTS, isArray: true }) events!: WebhookEvent[];
  @ApiProperty() enabled!: boolean;
  @ApiProperty({ description: 'Always true: a secret is set (its value is never returned)' }) hasSecret!: boolean;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;
}

export class WebhookDeliveryDto {
  @ApiProperty() id!: string;
  @ApiProperty() webhookId!: string;
  @ApiProperty({ enum: WEBHOOK_EVENTS }) event!: WebhookEvent;
  @ApiProperty({ enum: WEBHOOK_DELIVERY_STATES }) state!: WebhookDeliveryState;
  @ApiProperty({ description: 'Attempts made so far' }) attempts!: number;
  @ApiProperty({ nullable: true, type: Number, description: 'HTTP status of the last attempt; null = no answer' }) lastStatus!: number | null;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
  @ApiProperty() lastDurationMs!: number;
  @ApiProperty({ type: Object, description: 'The JSON body sent' }) payload!: unknown;
  @ApiProperty() createdAt!: Date;
  @ApiProperty({ nullable: true, type: Date }) deliveredAt!: Date | null;
}

export class WebhookDeliveryPageDto {
  @ApiProperty({ type: [WebhookDeliveryDto] }) items!: WebhookDeliveryDto[];
  @ApiProperty() total!: number;
  @ApiProperty() page!: number;
  @ApiProperty() pageSize!: number;
}
