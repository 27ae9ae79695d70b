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

/**
 * What one disk of a backup job did (issue 5 job history): a job's `disks` in the database and in GET /api/jobs/:id,
 * also kept on the restore point disk as `figures`.
 */
export interface JobDiskFigures {
  /** Repository disk key (`disk-<deviceKey>`). */
  key: string;
  label: string;
  capacityBytes: number;
  /** How the disk was read: only the areas changed since the parent point (CBT), or whole. */
  mode: 'full' | 'incremental';
  /** Why a full read was done (no parent, CBT reset, disk resized, ...). */
  fullReason?: string;
  /** Bytes read from the host. */
  bytesRead: number;
  /** Bytes the host reported changed (incremental) or allocated (full read of allocated areas only). */
  changedBytes: number;
  /** Compressed bytes of the chunks this disk added to the repository. */
  newBytes: number;
  newChunks: number;
  /** Chunks of the disk (zero chunks included). */
  chunks: number;
  zeroChunks: number;
  /** Chunks already in the repository (parent chunks included). */
  dedupChunks: number;
  /** Share of the disk's non-zero chunks that were already stored, 0–1 (1 = nothing new). */
  dedupRatio: number;
  durationMs: number;
  /** Bytes read per second. */
  speed: number;
}

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
