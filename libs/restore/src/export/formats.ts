import { VmkeepError } from '@vmkeep/contracts';

/** Image formats a single disk of a restore point can be exported as. */
export type DiskExportFormat = 'vmdk-stream' | 'vhdx' | 'raw';

export const DISK_EXPORT_FORMATS: readonly DiskExportFormat[] = ['vmdk-stream', 'vhdx', 'raw'];

/** Everything `vmkeep restore export` can produce: a disk image, or the whole VM as an OVA. */
export type ExportFormat = DiskExportFormat | 'ova';

export const EXPORT_FORMATS: readonly ExportFormat[] = [...DISK_EXPORT_FORMATS, 'ova'];

/** An export that cannot be made (unknown format, a disk the format cannot hold); the API answers 400. */
export class ExportError extends VmkeepError {
  constructor(message: string) {
    super(message, 'invalid_export');
  }
}

export function isDiskExportFormat(value: unknown): value is DiskExportFormat {
  return typeof value === 'string' && (DISK_EXPORT_FORMATS as readonly string[]).includes(value);
}

export function checkDiskExportFormat(value: unknown): DiskExportFormat {
  if (!isDiskExportFormat(value)) {
    throw new ExportError(`unknown export format ${JSON.stringify(value)} (expected ${DISK_EXPORT_FORMATS.join(', ')})`);
  }
  return value;
}

/** Media type and file extension of each export. */
export const EXPORT_MEDIA: Record<ExportFormat, { contentType: string; extension: string }> = {
  'vmdk-stream': { contentType: 'application/x-vmdk', extension: 'vmdk' },
  vhdx: { contentType: 'application/x-vhdx', extension: 'vhdx' },
  raw: { contentType: 'application/octet-stream', extension: 'raw' },
  ova: { contentType: 'application/x-tar', extension: 'ova' },
};

/** A streamed export: its bytes in order, and their exact count when it is known before the first byte. */
export interface ExportStream {
  format: ExportFormat;
  /** Bytes of the image in order. Stopping early (return/throw) stops the reads. */
  chunks: AsyncIterable<Buffer>;
  /** Exact length in bytes, known up front for raw, vhdx and ova; undefined for vmdk-stream (compressed). */
  length?: number;
  contentType: string;
  extension: string;
  /**
   * Takes back a buffer `chunks` yielded once the consumer is done with it (e.g. from the callback of the write
   * that sent it): its memory is reused for the next reads at once instead of being left to the garbage
   * collector. Optional on both sides (raw exports of a restore point have it); buffers it does not know are
   * ignored. The buffer and every view of it must not be touched afterwards.
   */
  release?(chunk: Buffer): void;
}
