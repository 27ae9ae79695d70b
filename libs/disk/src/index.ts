/**
 * The Disk contract: every disk source (a format reader, the datastore HTTP reader, a restore point, an NBD
 * client) is a Disk, and everything that consumes disk data reads through it.
 */

/** A byte range of a disk. */
export interface Extent {
  offset: number;
  length: number;
}

export interface Disk {
  /** Virtual size in bytes. */
  readonly size: number;
  /**
   * Reads exactly `length` bytes at `offset` (offset + length ≤ size). Never returns short or zero-filled data
   * for data it could not read: it throws instead.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Ranges that may hold data, sorted and non-overlapping. Everything outside them reads as zeros.
   * A source that cannot tell returns the whole disk.
   */
  extents(): Promise<Extent[]>;
  close(): Promise<void>;
  /**
   * Optional: takes back a buffer `read` returned, which the caller (and every view of it) will never touch
   * again, so a later read may fill it instead of allocating. A buffer not given back is garbage collected.
   */
  release?(buffer: Buffer): void;
}

/** Error of a disk source: names the source and, where known, the offset. */
export class DiskError extends Error {
  constructor(
    message: string,
    readonly source: string,
    readonly offset?: number,
  ) {
    super(offset === undefined ? `${source}: ${message}` : `${source} @${offset}: ${message}`);
    this.name = 'DiskError';
  }
}

/** Checks a read request against the disk size; every Disk implementation calls this first. */
export function checkRange(disk: { size: number }, source: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new DiskError(`invalid read range (${offset}, ${length})`, source, offset);
  }
  if (offset + length > disk.size) {
    throw new DiskError(`read of ${length} bytes past the end of a ${disk.size}-byte disk`, source, offset);
  }
}

/** A Disk over a Buffer; for tests and small in-memory images. */
export class BufferDisk implements Disk {
  constructor(private readonly data: Buffer) {}
  get size(): number {
    return this.data.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'buffer', offset, length);
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async extents(): Promise<Extent[]> {
    return this.data.length ? [{ offset: 0, length: this.data.length }] : [];
  }
  async close(): Promise<void> {}
}

// Kept last: overlay.ts uses the definitions above.
export * from './overlay';
export { SpareBuffers } from './spare-buffers';
