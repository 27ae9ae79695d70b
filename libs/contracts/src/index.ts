/**
 * Names and shapes shared by the API, the worker and the CLI. Imports nothing.
 */

/** BullMQ queue that carries backup jobs. */
export const BACKUP_QUEUE = 'vmkeep-backup';
/** Job name inside BACKUP_QUEUE. */
export const BACKUP_JOB = 'backup.vm';

/** Payload of a BACKUP_JOB: everything else is read from the database by id. */
export interface BackupJobPayload {
  jobId: string;
}

/** BullMQ queue that carries full VM restore jobs (libs/restore/src/vm). */
export const RESTORE_QUEUE = 'vmkeep-restore';
/** Job name inside RESTORE_QUEUE; the payload is a BackupJobPayload-like { jobId }. */
export const RESTORE_VM_JOB = 'restore.vm';

/** BullMQ queue that carries webhook deliveries (sent by the workers; one BullMQ job per delivery row). */
export const WEBHOOK_QUEUE = 'vmkeep-webhooks';
/** Job name inside WEBHOOK_QUEUE; the payload is { deliveryId }. */
export const WEBHOOK_DELIVERY_JOB = 'webhook.deliver';

export const ROLES = ['admin', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINAL_JOB_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];

export const JOB_TYPES = ['backup', 'restore-vm'] as const;
export type JobType = (typeof JOB_TYPES)[number];

/** Prefix of the name of every snapshot VMKeep creates, so leftovers can be recognised and removed. */
export const SNAPSHOT_NAME_PREFIX = 'vmkeep-backup';

/** Raised for anything the user can fix (bad input, unknown ids); the API maps it to 4xx. */
export class VmkeepError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
