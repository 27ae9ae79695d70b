/**
 * Atomic outputs: every file of an image is written under a temp name next to its target and renamed into
 * place only when the whole image is complete; on any error or abort the temp files are removed, so nothing
 * half-written ever appears at the output path.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ImageWriteError } from './errors';

const TEMP_MARKER = '.vmkeep-partial-';
const COALESCE = 1024 * 1024;

/** A file open for writing that counts its bytes; sequential appends are coalesced into large writes. */
export class OutputFile {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Next position of append(). */
  private position = 0;
  bytesWritten = 0;

  private constructor(
    readonly target: string,
    private readonly handle: fs.FileHandle,
  ) {}

  static async create(temp: string, target: string): Promise<OutputFile> {
    try {
      return new OutputFile(target, await fs.open(temp, 'wx'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new ImageWriteError(`cannot create the output file (${code})`, target);
    }
  }

  /** Bytes appended so far (the current end of the sequential stream). */
  get size(): number {
    return this.position + this.pendingBytes;
  }

  /** Appends at the end of what was appended before (buffers are copied only when coalesced). */
  async append(data: Buffer): Promise<void> {
    if (data.length === 0) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (this.pendingBytes >= COALESCE) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const data = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    const at = this.position;
    this.position += this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    await this.writeAt(data, at);
  }

  /** Writes `data` at `position`, independent of append(). */
  async writeAt(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
      if (bytesWritten <= 0) throw new ImageWriteError('short write', this.target);
      done += bytesWritten;
    }
    this.bytesWritten += data.length;
  }

  /** Sets the file's length; growing it leaves a hole that reads as zeros. */
  async truncate(length: number): Promise<void> {
    await this.handle.truncate(length);
  }

  /** Flushes, makes the data durable (unless `durable` is false, for scratch files) and closes. */
  async finish(durable = true): Promise<void> {
    await this.flush();
    if (durable) await this.handle.sync();
    await this.handle.close();
  }

  /** Closes without flushing (the file is about to be removed). */
  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/**
 * Positioned writes to one OutputFile kept in flight together (at most `depth`), so the file system copies one
 * buffer while the caller prepares the next. They may complete in any order; `writtenBefore` says how far
 * everything is written. The caller keeps each buffer untouched until that point passes it.
 */
export class PositionedWrites {
  private readonly inFlight: { offset: number; done: boolean; error?: unknown; promise: Promise<void> }[] = [];

  constructor(
    private readonly file: OutputFile,
    private readonly depth = 4,
  ) {
    if (!Number.isSafeInteger(depth) || depth < 1) throw new RangeError(`write depth must be ≥ 1, got ${depth}`);
  }

  /** Starts writing `data` at `position`, first waiting while `depth` writes are in flight. Throws an earlier write's error. */
  async write(data: Buffer, position: number): Promise<void> {
    this.collect();
    while (this.inFlight.length >= this.depth) {
      await this.inFlight[0].promise;
      this.collect();
    }
    const entry: (typeof this.inFlight)[number] = { offset: position, done: false, promise: Promise.resolve() };
    entry.promise = this.file.writeAt(data, position).then(
      () => void (entry.done = true),
      (err: unknown) => {
        entry.done = true;
        entry.error = err ?? new ImageWriteError('write failed', this.file.target);
      },
    );
    this.inFlight.push(entry);
  }

  /** Every write started before the one at this position has completed (Infinity: all of them). */
  get writtenBefore(): number {
    return this.inFlight.find((e) => !e.done)?.offset ?? Infinity;
  }

  /** Waits for every write in flight; throws the first error. */
  async drain(): Promise<void> {
    await this.settle();
    this.collect();
  }

  /** Waits for every write in flight, whatever their outcome (before the buffers may be reused after a failure). */
  async settle(): Promise<void> {
    await Promise.all(this.inFlight.map((e) => e.promise));
  }

  /** Drops completed writes from the front; throws the first failed one. */
  private collect(): void {
    while (this.inFlight.length > 0 && this.inFlight[0].done) {
      const { error } = this.inFlight.shift() as (typeof this.inFlight)[number];
      if (error !== undefined) throw error;
    }
  }
}

/** The set of files one image write produces. */
export class AtomicOutput {
  private readonly entries: { target: string; temp: string; keep: boolean; file?: OutputFile }[] = [];

  private async create(target: string, keep: boolean): Promise<{ temp: string; file: OutputFile }> {
    const name = `.${path.basename(target)}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`;
    const temp = path.join(path.dirname(target), name);
    const entry: (typeof this.entries)[number] = { target, temp, keep };
    this.entries.push(entry);
    entry.file = await OutputFile.create(temp, target);
    return { temp, file: entry.file };
  }

  /** Creates the temp file that becomes `target` on commit. */
  async open(target: string): Promise<OutputFile> {
    return (await this.create(target, true)).file;
  }

  /** A scratch file next to `near`, removed in every outcome (never renamed into place). */
  async scratch(near: string): Promise<{ path: string; file: OutputFile }> {
    const { temp, file } = await this.create(near, false);
    return { path: temp, file };
  }

  /** Renames every kept file into place, last opened first (extents before the descriptor naming them). */
  async commit(): Promise<void> {
    const kept = this.entries.filter((e) => e.keep);
    for (const e of [...kept].reverse()) await fs.rename(e.temp, e.target);
    for (const e of this.entries) if (!e.keep) await fs.rm(e.temp, { force: true });
    for (const dir of new Set(kept.map((e) => path.dirname(e.target)))) await syncDir(dir);
  }

  /** Closes and removes every temp file. */
  async discard(): Promise<void> {
    for (const e of this.entries) {
      await e.file?.discard();
      await fs.rm(e.temp, { force: true }).catch(() => undefined);
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Runs `write` with a fresh AtomicOutput: commits when it resolves, removes every temp file when it throws. */
export async function atomically<T>(write: (out: AtomicOutput) => Promise<T>): Promise<T> {
  const out = new AtomicOutput();
  try {
    const result = await write(out);
    await out.commit();
    return result;
  } catch (err) {
    await out.discard();
    throw err;
  }
}
