/**
 * A copy-on-write overlay over a read-only Disk: writes go to a sparse scratch file in a folder of the caller's
 * choosing, tracked per block in an allocation map; reads merge the overlay and the base. The base is never
 * written. Used by instant restore: a VM boots from a restore point and its writes land here.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { checkRange, DiskError, type Disk, type Extent } from './index';

/** A Disk that also takes writes. */
export interface WritableDisk extends Disk {
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes the range read as zeros. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Makes completed writes durable. */
  flush(): Promise<void>;
}

export interface OverlayOptions {
  /** Granularity of the allocation map; a power of two between 4 KiB and 16 MiB. Default 64 KiB. */
  blockSize?: number;
}

/** State of one overlay block. */
const BASE = 0;
const DATA = 1;
const ZERO = 2;

export const DEFAULT_OVERLAY_BLOCK = 64 * 1024;
const DATA_FILE = 'overlay.data';

export class OverlayDisk implements WritableDisk {
  private readonly state: Uint8Array;
  private baseExtents?: Promise<Extent[]>;
  private mergedExtents?: Extent[];
  /** Writes run one at a time: partial-block writes read, merge and write whole blocks. */
  private writeQueue: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly source: string;

  private constructor(
    private readonly base: Disk,
    private readonly file: fsp.FileHandle,
    readonly dataFile: string,
    readonly blockSize: number,
  ) {
    this.state = new Uint8Array(Math.ceil(base.size / blockSize));
    this.source = `overlay ${path.basename(path.dirname(dataFile))}`;
  }

  /** Creates an empty overlay over `base` in `dir` (created if missing; its overlay file must not exist yet). */
  static async create(base: Disk, dir: string, options: OverlayOptions = {}): Promise<OverlayDisk> {
    const blockSize = options.blockSize ?? DEFAULT_OVERLAY_BLOCK;
    if (!Number.isInteger(blockSize) || blockSize < 4096 || blockSize > 16 << 20 || (blockSize & (blockSize - 1)) !== 0) {
      throw new DiskError(`block size ${blockSize} must be a power of two between 4 KiB and 16 MiB`, 'overlay');
    }
    await fsp.mkdir(dir, { recursive: true });
    const dataFile = path.join(dir, DATA_FILE);
    const file = await fsp.open(dataFile, 'wx+', 0o600);
    try {
      await file.truncate(base.size); // sparse: takes no space until written
    } catch (err) {
      await file.close();
      await fsp.rm(dataFile, { force: true });
      throw err;
    }
    return new OverlayDisk(base, file, dataFile, blockSize);
  }

  get size(): number {
    return this.base.size;
  }

  /** Bytes of the blocks written so far (data, not zeroed blocks). */
  get overlayBytes(): number {
    let n = 0;
    for (let i = 0; i < this.state.length; i++) if (this.state[i] === DATA) n += this.blockLength(i);
    return n;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source, offset, length);
    this.checkOpen();
    const out = Buffer.alloc(length);
    const parts: Promise<void>[] = [];
    for (const run of this.runs(offset, length)) {
      const at = run.offset - offset;
      if (run.state === DATA) {
        parts.push(this.readFile(out, at, run.offset, run.length));
      } else if (run.state === BASE) {
        parts.push(this.base.read(run.offset, run.length).then((data) => void data.copy(out, at)));
      } // ZERO: already zero
    }
    await Promise.all(parts);
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    checkRange(this, this.source, offset, data.length);
    return this.serialized(() => this.writeNow(offset, data));
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, this.source, offset, length);
    return this.serialized(async () => {
      const bs = this.blockSize;
      const end = offset + length;
      const firstFull = Math.ceil(offset / bs);
      const lastFull = end === this.size ? this.state.length : Math.floor(end / bs); // exclusive
      if (firstFull >= lastFull) {
        await this.writeNow(offset, Buffer.alloc(length));
        return;
      }
      const headEnd = firstFull * bs;
      if (headEnd > offset) await this.writeNow(offset, Buffer.alloc(headEnd - offset));
      this.state.fill(ZERO, firstFull, lastFull);
      this.mergedExtents = undefined;
      const tailStart = Math.min(lastFull * bs, this.size);
      if (end > tailStart) await this.writeNow(tailStart, Buffer.alloc(end - tailStart));
    });
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.writeQueue;
    await this.file.datasync();
  }

  /** Base extents minus blocks the overlay replaced, plus the blocks written in the overlay. */
  async extents(): Promise<Extent[]> {
    this.checkOpen();
    this.baseExtents ??= this.base.extents();
    const base = await this.baseExtents;
    if (this.mergedExtents) return this.mergedExtents;
    const overridden: Extent[] = [];
    const written: Extent[] = [];
    for (const run of this.runs(0, this.size)) {
      if (run.state === BASE) continue;
      overridden.push(run);
      if (run.state === DATA) written.push(run);
    }
    const merged = mergeExtents([...subtractExtents(base, overridden), ...written]);
    this.mergedExtents = merged;
    return merged;
  }

  /**
   * Hands the merged disk (base + overlay) to `writer` — e.g. writeImage for "migrate to production" — after
   * waiting for pending writes. The view refuses writes; the overlay must not be written while it runs.
   */
  async mergedTo<T>(writer: (merged: Disk) => Promise<T>): Promise<T> {
    await this.flush();
    const view: Disk = {
      size: this.size,
      read: (o, l) => this.read(o, l),
      extents: () => this.extents(),
      close: async () => undefined,
    };
    return writer(view);
  }

  /** Closes the scratch file and deletes it. The base stays open: its owner closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeQueue.catch(() => undefined);
    await this.file.close();
    await fsp.rm(this.dataFile, { force: true });
  }

  private serialized(op: () => Promise<void>): Promise<void> {
    this.checkOpen();
    const next = this.writeQueue.then(op);
    this.writeQueue = next.catch(() => undefined);
    return next;
  }

  private async writeNow(offset: number, data: Buffer): Promise<void> {
    const bs = this.blockSize;
    const end = offset + data.length;
    let pos = offset;
    while (pos < end) {
      const block = Math.floor(pos / bs);
      const blockStart = block * bs;
      const blockLen = this.blockLength(block);
      // Consecutive whole blocks go out in one write.
      if (pos === blockStart && end - pos >= blockLen) {
        let last = block;
        while ((last + 1) * bs < end && Math.min((last + 2) * bs, this.size) <= end) last++;
        const runEnd = Math.min((last + 1) * bs, this.size);
        await this.writeFile(data.subarray(pos - offset, runEnd - offset), pos);
        this.state.fill(DATA, block, last + 1);
        pos = runEnd;
      } else {
        const n = Math.min(blockStart + blockLen, end) - pos;
        if (this.state[block] !== DATA) {
          // A copy: the base may hand out views of memory it keeps (a read cache), which must never see the write.
          const merged = this.state[block] === BASE ? Buffer.from(await this.base.read(blockStart, blockLen)) : Buffer.alloc(blockLen);
          data.copy(merged, pos - blockStart, pos - offset, pos - offset + n);
          await this.writeFile(merged, blockStart);
          this.state[block] = DATA;
        } else {
          await this.writeFile(data.subarray(pos - offset, pos - offset + n), pos);
        }
        pos += n;
      }
    }
    this.mergedExtents = undefined;
  }

  private async writeFile(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.file.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }

  private async readFile(out: Buffer, at: number, position: number, length: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.file.read(out, at + done, length - done, position + done);
      if (bytesRead === 0) throw new DiskError('overlay file is shorter than the disk', this.source, position + done);
      done += bytesRead;
    }
  }

  /** Runs of equal block state covering [offset, offset+length). */
  private *runs(offset: number, length: number): Generator<{ offset: number; length: number; state: number }> {
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const block = Math.floor(pos / this.blockSize);
      const state = this.state[block];
      let next = block + 1;
      while (next * this.blockSize < end && this.state[next] === state) next++;
      const runEnd = Math.min(next * this.blockSize, end);
      yield { offset: pos, length: runEnd - pos, state };
      pos = runEnd;
    }
  }

  private blockLength(block: number): number {
    return Math.min(this.blockSize, this.size - block * this.blockSize);
  }

  private checkOpen(): void {
    if (this.closed) throw new DiskError('overlay is closed', this.source);
  }
}

/** Sorted, non-overlapping extents with touching ones joined. */
export function mergeExtents(extents: Extent[]): Extent[] {
  const sorted = extents.filter((e) => e.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, e.offset + e.length - last.offset);
    } else {
      out.push({ offset: e.offset, length: e.length });
    }
  }
  return out;
}

/** `from` without the ranges in `cut` (both sorted and non-overlapping). */
export function subtractExtents(from: Extent[], cut: Extent[]): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const e of from) {
    let start = e.offset;
    const end = e.offset + e.length;
    while (j < cut.length && cut[j].offset + cut[j].length <= start) j++;
    let k = j;
    while (start < end && k < cut.length && cut[k].offset < end) {
      if (cut[k].offset > start) out.push({ offset: start, length: cut[k].offset - start });
      start = Math.max(start, cut[k].offset + cut[k].length);
      k++;
    }
    if (start < end) out.push({ offset: start, length: end - start });
  }
  return out;
}
