import { DiskError } from '@vmkeep/disk';
import {
  AuthenticationError,
  CertificateError,
  ConnectionError,
  FaultError,
  NotFoundError,
  TaskError,
} from '@vmkeep/vsphere';

/** A failure whose message is already written for the admin; shown on the job as it is. */
export class BackupFailure extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BackupFailure';
  }
}

/** The job was cancelled by a user (or its worker shut down) while it ran. */
export class BackupCancelled extends Error {
  constructor(readonly reason: 'user' | 'shutdown') {
    super(reason === 'user' ? 'cancelled by user' : 'the worker shut down while the backup ran');
    this.name = 'BackupCancelled';
  }
}

/** Where a failure happened, for the message. */
export interface FailureContext {
  hostName?: string;
  vmName?: string;
}

/** One line for the job's error column: says what went wrong and where, never includes credentials. */
export function describeFailure(err: unknown, ctx: FailureContext = {}): string {
  const host = ctx.hostName ? `host ${ctx.hostName}` : 'the host';
  if (err instanceof BackupFailure) return err.message;
  if (err instanceof AuthenticationError) return `${host} rejected the credentials: ${err.message}`;
  if (err instanceof CertificateError) return `${host} presented an untrusted TLS certificate: ${err.message}`;
  if (err instanceof ConnectionError) return `${host} is unreachable: ${err.message}`;
  if (err instanceof NotFoundError) return `${err.message} (not found on ${host})`;
  if (err instanceof TaskError) return `a vSphere task failed on ${host}: ${err.message}`;
  if (err instanceof FaultError) return `${host} returned ${err.fault}: ${err.message}`;
  if (err instanceof DiskError) return `reading disk data failed: ${err.message}`;
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
