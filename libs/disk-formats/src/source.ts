import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { SpareBuffers } from '@vmkeep/disk';
import { DiskFormatError, MissingFileError } from './errors';

/**
 * Random access to the bytes of one file. Parsers take a ByteSource and never open files themselves, so they
 * can be fed from memory (tests, fuzzing) or from a tar member (OVA).
 */
export interface ByteSource {
  /** Name used in error messages (a path relative to what the user opened, or a member name). */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset`; a read past the end is a DiskFormatError("truncated"). */
  read(offset: number, length: number, structure: string): Promise<Buffer>;
  close(): Promise<void>;
  /** Optional: takes back a buffer `read` returned that nobody uses any more (see Disk.release). */
  release?(buffer: Buffer): void;
}

/** Largest single read a parser may ask for; bigger requests are a hostile header, not a real need. */
export const MAX_READ = 64 * 1024 * 1024;

function checkRead(src: { name: string; size: number }, offset: number, length: number, structure: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new DiskFormatError(`invalid read (${offset}, ${length})`, src.name, structure, offset);
  }
  if (length > MAX_READ) {
    throw new DiskFormatError(`refusing a ${length}-byte read`, src.name, structure, offset);
  }
  if (offset + length > src.size) {
    throw new DiskFormatError(`file is truncated: needs ${offset + length} bytes, has ${src.size}`, src.name, structure, offset);
  }
}

export class FileSource implements ByteSource {
  /** Buffers given back (release), handed out again by reads of their length. */
  private readonly spares = new SpareBuffers();

  private constructor(
    readonly name: string,
    private readonly handle: fs.FileHandle,
    readonly size: number,
  ) {}

  static async open(file: string, name = file): Promise<FileSource> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new MissingFileError(code === 'ENOENT' ? 'file does not exist' : `cannot open (${code})`, name, 'file');
    }
    try {
      const st = await handle.stat();
      if (!st.isFile() && !st.isBlockDevice()) throw new DiskFormatError('not a regular file', name, 'file');
      return new FileSource(name, handle, st.size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async read(offset: number, length: number, structure: string): Promise<Buffer> {
    checkRead(this, offset, length, structure);
    const buf = this.spares.take(length) ?? Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new DiskFormatError('file is truncated (short read)', this.name, structure, offset + done);
      }
      done += bytesRead;
    }
    return buf;
  }

  /**
   * Keeps a buffer given back for the next read of its length: a backup reading a disk chunk by chunk then
   * allocates a few buffers instead of one per chunk, which spares the garbage collector gigabytes of turnover.
   */
  release(buffer: Buffer): void {
    this.spares.give(buffer);
  }

  async close(): Promise<void> {
    this.spares.clear();
    await this.handle.close();
  }
}

/** A ByteSource over a Buffer (tests, fuzzing, small members). */
export class BufferSource implements ByteSource {
  constructor(
    readonly name: string,
    private readonly data: Buffer,
  ) {}
  get size(): number {
    return this.data.length;
  }
  async read(offset: number, length: number, structure: string): Promise<Buffer> {
    checkRead(this, offset, length, structure);
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async close(): Promise<void> {}
}

/**
 * Resolves a file name found inside an image (extent, parent hint) against the folder of the file that named
 * it. Absolute names, drive letters and names leaving that folder are refused: an image never makes us open
 * a file the user did not hand us.
 */
export function resolveReferencedFile(referrer: string, name: string, structure: string): string {
  if (name === '' || name.includes('\0')) throw new MissingFileError('empty or invalid file name', referrer, structure);
  if (path.isAbsolute(name) || /^[a-zA-Z]:/.test(name) || name.startsWith('\\')) {
    throw new MissingFileError(`refusing absolute path "${name}"`, referrer, structure);
  }
  const base = path.dirname(path.resolve(referrer));
  const target = path.resolve(base, name.replace(/\\/g, '/'));
  if (path.relative(base, target).startsWith('..') || path.relative(base, target) === '') {
    throw new MissingFileError(`refusing "${name}": it leaves the folder of ${path.basename(referrer)}`, referrer, structure);
  }
  return target;
}
