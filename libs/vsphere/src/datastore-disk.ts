/**
 * A VM disk read through the datastore HTTP interface (GET /folder/<path>?dcPath=..&dsName=..) as a Disk.
 * The backing .vmdk descriptor is read first to find the flat data file (a single FLAT/VMFS extent); a
 * backing file that is not a descriptor is read as raw data. Data is fetched with Range requests whose
 * 206 status, Content-Range and length are verified; a failed range is retried a few times.
 */
import { checkRange, DiskError, SpareBuffers, type Disk, type Extent } from '@vmkeep/disk';
import { parseDescriptor } from '@vmkeep/disk-formats';
import type { VimConnection } from './connection';
import { parseDatastorePath } from './devices';
import { VsphereError } from './errors';
import type { VmDiskInfo } from './types';
import { flatExtent, isSparseHeader, looksLikeDescriptor } from './vmdk-descriptor';

/** Descriptors are a few hundred bytes; anything this big is data, not a descriptor. */
const DESCRIPTOR_PROBE_BYTES = 64 * 1024;
const RETRIES = 3;
const RETRY_BASE_MS = 200;

export interface DatastoreDiskOptions {
  /** Attempts after the first failed range read (default 3), with doubling pauses from `retryBaseMs`. */
  retries?: number;
  retryBaseMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A range the host refused for good (file gone, range outside it): not worth retrying. */
class RangeRefusedError extends DiskError {}

/** "/folder/<path>?dcPath=<dc>&dsName=<ds>" with every path segment escaped. */
export function folderUrl(datastorePath: string, datacenterPath: string, datastore: string): string {
  const encodedPath = datastorePath.split('/').filter(Boolean).map(encodeURIComponent).join('/');
  return `/folder/${encodedPath}?dcPath=${encodeURIComponent(datacenterPath)}&dsName=${encodeURIComponent(datastore)}`;
}

/** Parses "bytes a-b/total" (total may be "*"). */
export function parseContentRange(header: string | undefined): { start: number; end: number; total?: number } | undefined {
  const match = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? '');
  if (!match) return undefined;
  return { start: Number(match[1]), end: Number(match[2]), ...(match[3] !== '*' ? { total: Number(match[3]) } : {}) };
}

class DatastoreDisk implements Disk {
  private closed = false;
  /** Buffers given back (release): a later read of their length receives its range into one of them. */
  private readonly spares = new SpareBuffers();

  constructor(
    private readonly connection: VimConnection,
    /** /folder URL of the data file. */
    private readonly dataUrl: string,
    /** Where the disk starts in the data file. */
    private readonly base: number,
    readonly size: number,
    private readonly source: string,
    private readonly options: Required<DatastoreDiskOptions>,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source, offset, length);
    if (this.closed) throw new DiskError('read after close', this.source, offset);
    if (length === 0) return Buffer.alloc(0);
    // A spare serves the first attempt only: a retry never shares a buffer with a request that failed.
    let into = this.spares.take(length);
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.options.retries; attempt++) {
      if (attempt > 0) await sleep(this.options.retryBaseMs * 2 ** (attempt - 1));
      try {
        return await this.readOnce(offset, length, into);
      } catch (error) {
        into = undefined;
        lastError = error;
        if (error instanceof RangeRefusedError) break;
      }
    }
    if (lastError instanceof DiskError) throw lastError;
    const reason = lastError instanceof Error ? lastError.message : String(lastError);
    throw new DiskError(`range read failed after ${this.options.retries + 1} attempts: ${reason}`, this.source, offset);
  }

  /**
   * Keeps a buffer a read returned, which its caller no longer uses, for a later read of the same length: a
   * backup then receives its chunks into a few buffers instead of allocating one per chunk.
   */
  release(buffer: Buffer): void {
    if (!this.closed) this.spares.give(buffer);
  }

  private async readOnce(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const start = this.base + offset;
    const end = start + length - 1;
    const response = await this.connection.get(this.dataUrl, { Range: `bytes=${start}-${end}` }, length, into);
    if (response.status !== 206) {
      const ErrorType = response.status === 404 || response.status === 416 ? RangeRefusedError : DiskError;
      throw new ErrorType(`expected HTTP 206 for bytes ${start}-${end}, got HTTP ${response.status}`, this.source, offset);
    }
    const range = parseContentRange(response.headers['content-range']);
    if (!range || range.start !== start || range.end !== end) {
      throw new DiskError(
        `Content-Range "${response.headers['content-range'] ?? ''}" does not match the requested bytes ${start}-${end}`,
        this.source,
        offset,
      );
    }
    if (response.body.length !== length) {
      throw new DiskError(`got ${response.body.length} bytes, expected ${length}`, this.source, offset);
    }
    return response.body;
  }

  async extents(): Promise<Extent[]> {
    return this.size > 0 ? [{ offset: 0, length: this.size }] : [];
  }

  async close(): Promise<void> {
    this.closed = true;
    this.spares.clear();
  }
}

/**
 * Opens a VM disk for reading. `datacenterPath` is the datacenter's inventory path (VmInfo.datacenterPath).
 * The disk's size is its capacity; a data file shorter than that is refused.
 */
export async function openDatastoreDisk(
  connection: VimConnection,
  datacenterPath: string,
  disk: VmDiskInfo,
  options: DatastoreDiskOptions = {},
): Promise<Disk> {
  const source = disk.fileName || `disk ${disk.key}`;
  const location = parseDatastorePath(disk.fileName);
  if (!location || !location.path) throw new DiskError('not a datastore path ("[datastore] folder/file")', source);
  if (location.path.split('/').includes('..')) throw new DiskError('datastore path must not contain ".."', source);
  if (!Number.isSafeInteger(disk.capacityBytes) || disk.capacityBytes < 0) {
    throw new DiskError(`invalid capacity ${disk.capacityBytes}`, source);
  }
  const datastore = disk.datastore || location.datastore;
  const urlOf = (filePath: string) => folderUrl(filePath, datacenterPath, datastore);

  // 1. The backing file's head: a descriptor, a sparse header, or raw data.
  const backingUrl = urlOf(location.path);
  const head = await fetchRange(connection, backingUrl, 0, DESCRIPTOR_PROBE_BYTES - 1, source);
  let dataUrl = backingUrl;
  let base = 0;
  let dataFileSize = head.total;
  if (looksLikeDescriptor(head.body)) {
    if (head.total > DESCRIPTOR_PROBE_BYTES) throw new DiskError(`descriptor larger than ${DESCRIPTOR_PROBE_BYTES} bytes`, source);
    let extent: ReturnType<typeof flatExtent>;
    try {
      extent = flatExtent(parseDescriptor(head.body, location.path));
    } catch (error) {
      throw new DiskError(`unsupported descriptor: ${(error as Error).message}`, source);
    }
    if (extent.sizeBytes < disk.capacityBytes) {
      throw new DiskError(`extent holds ${extent.sizeBytes} bytes, less than the disk capacity ${disk.capacityBytes}`, source);
    }
    const folder = location.path.includes('/') ? location.path.slice(0, location.path.lastIndexOf('/') + 1) : '';
    dataUrl = urlOf(folder + extent.file);
    base = extent.offsetBytes;
    dataFileSize = (await fetchRange(connection, dataUrl, 0, 0, `${source} → ${extent.file}`)).total;
  } else if (isSparseHeader(head.body)) {
    throw new DiskError('sparse VMDK data is not supported by the datastore reader (flat disks only)', source);
  }

  // 2. The data file must hold the whole disk.
  if (dataFileSize < base + disk.capacityBytes) {
    throw new DiskError(
      `data file holds ${dataFileSize} bytes, less than offset ${base} + capacity ${disk.capacityBytes}`,
      source,
    );
  }
  return new DatastoreDisk(connection, dataUrl, base, disk.capacityBytes, source, {
    retries: options.retries ?? RETRIES,
    retryBaseMs: options.retryBaseMs ?? RETRY_BASE_MS,
  });
}

/** A probe range read that returns the bytes and the file's total size (from Content-Range). */
async function fetchRange(
  connection: VimConnection,
  url: string,
  start: number,
  end: number,
  source: string,
): Promise<{ body: Buffer; total: number }> {
  let response;
  try {
    response = await connection.get(url, { Range: `bytes=${start}-${end}` }, end - start + 1);
  } catch (error) {
    if (error instanceof VsphereError) throw new DiskError(error.message, source, start);
    throw error;
  }
  if (response.status === 404) throw new DiskError('file not found on the datastore (HTTP 404)', source);
  if (response.status === 416) throw new DiskError('file is empty (HTTP 416)', source);
  if (response.status !== 206) throw new DiskError(`expected HTTP 206, got HTTP ${response.status}`, source, start);
  const range = parseContentRange(response.headers['content-range']);
  if (!range || range.total === undefined || range.start !== start) {
    throw new DiskError(`unusable Content-Range "${response.headers['content-range'] ?? ''}"`, source, start);
  }
  if (response.body.length !== range.end - range.start + 1) {
    throw new DiskError(`got ${response.body.length} bytes for Content-Range ${range.start}-${range.end}`, source, start);
  }
  return { body: response.body, total: range.total };
}
