/**
 * Unpacks a tar stream (ustar + PAX, GNU sparse 1.0 as written by tarStream) into a folder, safely: nothing is
 * written outside it (absolute names and ".." refused, every parent checked to be a real folder, never a
 * symlink), symlinks are recreated as symlinks and never followed, files are created with O_NOFOLLOW.
 */
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

const BLOCK = 512;

export interface UntarResult {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  /** Entries of other kinds (hard links, devices) that were not unpacked. */
  skipped: string[];
}

export class UntarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UntarError';
  }
}

/** Pulls exact byte counts out of a chunked stream. */
class ByteReader {
  private pending: Buffer[] = [];
  private buffered = 0;
  private readonly it: AsyncIterator<Buffer | string>;

  constructor(source: AsyncIterable<Buffer | string>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buffered < n) {
      const next = await this.it.next();
      if (next.done) return false;
      const b = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      this.pending.push(b);
      this.buffered += b.length;
    }
    return true;
  }

  /** Up to `max` bytes (at least 1), or null at the end. */
  async some(max: number): Promise<Buffer | null> {
    if (!(await this.fill(1))) return null;
    const head = this.pending[0];
    const take = Math.min(max, head.length);
    const out = head.subarray(0, take);
    if (take === head.length) this.pending.shift();
    else this.pending[0] = head.subarray(take);
    this.buffered -= take;
    return out;
  }

  async exact(n: number): Promise<Buffer> {
    if (!(await this.fill(n))) throw new UntarError('the tar stream ended early');
    const all = Buffer.concat(this.pending);
    this.pending = all.length > n ? [all.subarray(n)] : [];
    this.buffered = all.length - n;
    return all.subarray(0, n);
  }

  async skip(n: number): Promise<void> {
    for (let left = n; left > 0; ) {
      const b = await this.some(left);
      if (!b) throw new UntarError('the tar stream ended early');
      left -= b.length;
    }
  }
}

function field(b: Buffer, at: number, len: number): string {
  const raw = b.subarray(at, at + len);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function num(b: Buffer, at: number, len: number): number {
  const text = field(b, at, len).trim();
  const n = text === '' ? 0 : parseInt(text, 8);
  if (!Number.isSafeInteger(n) || n < 0) throw new UntarError(`bad number in tar header: ${JSON.stringify(text)}`);
  return n;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const len = parseInt(data.subarray(at, space).toString('latin1'), 10);
    if (space < 0 || !Number.isSafeInteger(len) || len <= space - at || at + len > data.length) throw new UntarError('bad PAX record');
    const record = data.subarray(space + 1, at + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    at += len;
  }
  return out;
}

const padOf = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

/** Resolves an entry name to a path inside `root`, creating (real) parent folders; refuses escapes. */
async function safeTarget(root: string, name: string): Promise<string> {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (name.startsWith('/') || parts.some((p) => p === '..' || p.includes('\0'))) {
    throw new UntarError(`refusing tar entry ${JSON.stringify(name)}: it would leave the output folder`);
  }
  if (parts.length === 0) return root;
  let dir = root;
  for (const part of parts.slice(0, -1)) {
    dir = path.join(dir, part);
    await fsp.mkdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    if (!(await fsp.lstat(dir)).isDirectory()) throw new UntarError(`refusing tar entry ${JSON.stringify(name)}: ${part} is not a folder`);
  }
  return path.join(dir, parts[parts.length - 1]);
}

/** Removes whatever is at `p` unless it is a folder (so a file or symlink is replaced, never written through). */
async function clear(p: string): Promise<boolean> {
  const st = await fsp.lstat(p).catch(() => null);
  if (st && !st.isDirectory()) await fsp.unlink(p);
  return !!st?.isDirectory();
}

async function writeData(
  reader: ByteReader,
  target: string,
  segments: { offset: number; length: number }[],
  realSize: number,
  mode: number,
  mtime: Date,
): Promise<void> {
  await clear(target);
  const fh = await fsp.open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    for (const s of segments) {
      for (let done = 0; done < s.length; ) {
        const b = await reader.some(s.length - done);
        if (!b) throw new UntarError('the tar stream ended early');
        await fh.write(b, 0, b.length, s.offset + done);
        done += b.length;
      }
    }
    await fh.truncate(realSize);
    await fh.chmod(mode & 0o777);
    await fh.utimes(mtime, mtime);
  } finally {
    await fh.close();
  }
}

/** Unpacks `source` into `root` (created if missing). */
export async function untar(source: AsyncIterable<Buffer | string>, root: string): Promise<UntarResult> {
  await fsp.mkdir(root, { recursive: true });
  const reader = new ByteReader(source);
  const result: UntarResult = { files: 0, directories: 0, symlinks: 0, bytes: 0, skipped: [] };
  const dirTimes: [string, Date, number][] = [];
  let pax: Record<string, string> = {};
  for (;;) {
    const header = await reader.exact(BLOCK);
    if (header.every((b) => b === 0)) break;
    const type = String.fromCharCode(header[156] || 0x30);
    const prefix = field(header, 345, 155);
    const ustarName = (prefix ? prefix + '/' : '') + field(header, 0, 100);
    const size = pax.size !== undefined ? Number(pax.size) : num(header, 124, 12);
    if (!Number.isSafeInteger(size) || size < 0) throw new UntarError('bad entry size');
    if (type === 'x' || type === 'g') {
      if (size > 1024 * 1024) throw new UntarError('PAX header larger than 1 MiB');
      const data = await reader.exact(size + padOf(size));
      if (type === 'x') pax = parsePax(data.subarray(0, size));
      continue;
    }
    const name = pax['GNU.sparse.name'] ?? pax.path ?? ustarName;
    const mode = num(header, 100, 8);
    const mtime = new Date((pax.mtime !== undefined ? Number(pax.mtime) : num(header, 136, 12)) * 1000);
    const linkname = pax.linkpath ?? field(header, 157, 100);
    const sparse = pax['GNU.sparse.major'] === '1';
    const realSize = sparse ? Number(pax['GNU.sparse.realsize']) : size;
    pax = {};
    const target = await safeTarget(root, name);
    if (type === '5') {
      if (!(await clear(target))) await fsp.mkdir(target);
      dirTimes.push([target, mtime, mode]);
      result.directories++;
      await reader.skip(size + padOf(size));
    } else if (type === '2') {
      await clear(target);
      await fsp.symlink(linkname, target);
      result.symlinks++;
      await reader.skip(size + padOf(size));
    } else if (type === '0' || type === '\0' || type === '7') {
      let segments = [{ offset: 0, length: size }];
      let mapBytes = 0;
      if (sparse) {
        if (!Number.isSafeInteger(realSize) || realSize < 0) throw new UntarError('bad GNU.sparse.realsize');
        const parsed = await readSparseMap(reader);
        segments = parsed.segments;
        mapBytes = parsed.bytes;
      }
      const dataBytes = segments.reduce((n, s) => n + s.length, 0);
      if (mapBytes + dataBytes !== size || segments.some((s) => s.offset + s.length > realSize)) {
        throw new UntarError(`sparse map of ${JSON.stringify(name)} does not match its size`);
      }
      await writeData(reader, target, segments, realSize, mode, mtime);
      await reader.skip(padOf(size));
      result.files++;
      result.bytes += realSize;
    } else {
      result.skipped.push(name);
      await reader.skip(size + padOf(size));
    }
  }
  for (const [dir, mtime, mode] of dirTimes.reverse()) {
    await fsp.chmod(dir, (mode & 0o777) | 0o700);
    await fsp.utimes(dir, mtime, mtime);
  }
  return result;
}

/** The GNU sparse 1.0 map before the data: decimal lines, padded to a block. */
async function readSparseMap(reader: ByteReader): Promise<{ segments: { offset: number; length: number }[]; bytes: number }> {
  let text = '';
  let bytes = 0;
  const numbers: number[] = [];
  let count = -1;
  while (count < 0 || numbers.length < 1 + count * 2) {
    if (bytes > 64 * 1024 * 1024) throw new UntarError('sparse map too large');
    text += (await reader.exact(BLOCK)).toString('latin1');
    bytes += BLOCK;
    const lines = text.split('\n');
    text = lines.pop() ?? '';
    for (const line of lines) {
      const n = Number(line);
      if (!/^\d+$/.test(line) || !Number.isSafeInteger(n)) throw new UntarError('bad sparse map');
      numbers.push(n);
      if (numbers.length === 1) count = n;
    }
  }
  const segments = [];
  for (let i = 0; i < count; i++) segments.push({ offset: numbers[1 + i * 2], length: numbers[2 + i * 2] });
  return { segments, bytes };
}
