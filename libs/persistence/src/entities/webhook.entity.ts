import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';
import { bigintToNumber } from './columns';

/** Events a webhook can subscribe to. */
export const WEBHOOK_EVENTS = [
  'backup.succeeded',
  'backup.failed',
  'restore.succeeded',
  'restore.failed',
  'policy.run.finished',
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** An admin-managed HTTP endpoint that is told when jobs and policy runs end. */
@Entity('webhooks')
export class WebhookEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 128 }) name!: string;
  @Column({ type: 'varchar', length: 2048 }) url!: string;
  /** Subscribed events; `restore.*` style wildcards are expanded by the API before saving. */
  @Column({ type: 'simple-json' }) events!: WebhookEvent[];
  /** HMAC-SHA256 key, sealed with SecretBox; never returned by the API. */
  @Column({ type: 'text' }) secretSealed!: string;
  @Column({ type: 'boolean', default: true }) enabled!: boolean;
  @CreateDateColumn() createdAt!: Date;
  @UpdateDateColumn() updatedAt!: Date;
}

export const WEBHOOK_DELIVERY_STATES = ['pending', 'retrying', 'delivered', 'failed'] as const;
export type WebhookDeliveryState = (typeof WEBHOOK_DELIVERY_STATES)[number];

/** One event sent (or being sent) to one webhook, with the outcome of its last attempt. */
@Entity('webhook_deliveries')
@Index('IDX_webhook_deliveries_webhookId_createdAt', ['webhookId', 'createdAt'])
@Index('IDX_webhook_deliveries_webhookId_event_subject', ['webhookId', 'event', 'subject'], { unique: true })
export class WebhookDeliveryEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 36 }) webhookId!: string;
  @Column({ type: 'varchar', length: 32 }) event!: WebhookEvent;
  /** What the event is about (job or policy run id): unique per webhook and event, so it is sent once. */
  @Column({ type: 'varchar', length: 64 }) subject!: string;
  /** The JSON body sent (the same bytes on every attempt, so the signature stays valid). */
  @Column({ type: 'text' }) payload!: string;
  @Column({ type: 'varchar', length: 16 }) state!: WebhookDeliveryState;
  @Column({ type: 'int', default: 0 }) attempts!: number;
  /** HTTP status of the last attempt; null when it got no answer (timeout, refused). */
  @Column({ type: 'int', nullable: true }) lastStatus!: number | null;
  @Column({ type: 'text', nullable: true }) lastError!: string | null;
  /** Milliseconds the last attempt took. */
  @Column({ type: 'bigint', default: 0, transformer: bigintToNumber }) lastDurationMs!: number;
  @CreateDateColumn() createdAt!: Date;
  @Column({ type: 'datetime', nullable: true }) deliveredAt!: Date | null;
}
