/**
 * A guest folder (or file) as a streaming ZIP64 archive: entries stored (no compression, so the size is known and
 * the stream is fast), UTF-8 names (flag bit 11), CRC-32 computed on the way and sent in a data descriptor,
 * Unix modes in the external attributes, symlinks as symlink entries holding their target. No temp files.
 */
import { crc32 } from 'node:zlib';
import type { FileSystem } from '@vmkeep/filesystems';
import { readFileRange } from './file-stream';
import { walkTree, type WalkEntry } from './walk';

const FLAGS = 0x0808; // data descriptor follows + UTF-8 names
const VERSION = 45; // ZIP64
const MADE_BY = (3 << 8) | VERSION; // Unix
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

interface Central {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
  dosTime: number;
  dosDate: number;
  external: number;
}

/** MS-DOS date and time of a UTC timestamp (clamped to 1980–2107). */
function dosDateTime(ms: number): { dosTime: number; dosDate: number } {
  const d = new Date(Math.min(Math.max(ms, Date.UTC(1980, 0, 1)), Date.UTC(2107, 11, 31, 23, 59, 58)));
  return {
    dosTime: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
    dosDate: ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

function localHeader(c: Central): Buffer {
  const b = Buffer.alloc(30 + c.name.length + 20);
  b.writeUInt32LE(0x04034b50, 0);
  b.writeUInt16LE(VERSION, 4);
  b.writeUInt16LE(FLAGS, 6);
  b.writeUInt16LE(0, 8);
  b.writeUInt16LE(c.dosTime, 10);
  b.writeUInt16LE(c.dosDate, 12);
  b.writeUInt32LE(0, 14);
  b.writeUInt32LE(0xffffffff, 18);
  b.writeUInt32LE(0xffffffff, 22);
  b.writeUInt16LE(c.name.length, 26);
  b.writeUInt16LE(20, 28);
  c.name.copy(b, 30);
  const x = 30 + c.name.length;
  b.writeUInt16LE(0x0001, x); // ZIP64 extra: sizes are in the data descriptor
  b.writeUInt16LE(16, x + 2);
  return b;
}

function dataDescriptor(c: Central): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0x08074b50, 0);
  b.writeUInt32LE(c.crc, 4);
  b.writeBigUInt64LE(BigInt(c.size), 8);
  b.writeBigUInt64LE(BigInt(c.size), 16);
  return b;
}

function centralHeader(c: Central): Buffer {
  const b = Buffer.alloc(46 + c.name.length + 28);
  b.writeUInt32LE(0x02014b50, 0);
  b.writeUInt16LE(MADE_BY, 4);
  b.writeUInt16LE(VERSION, 6);
  b.writeUInt16LE(FLAGS, 8);
  b.writeUInt16LE(0, 10);
  b.writeUInt16LE(c.dosTime, 12);
  b.writeUInt16LE(c.dosDate, 14);
  b.writeUInt32LE(c.crc, 16);
  b.writeUInt32LE(0xffffffff, 20);
  b.writeUInt32LE(0xffffffff, 24);
  b.writeUInt16LE(c.name.length, 28);
  b.writeUInt16LE(28, 30);
  b.writeUInt32LE(c.external >>> 0, 38);
  b.writeUInt32LE(0xffffffff, 42);
  c.name.copy(b, 46);
  const x = 46 + c.name.length;
  b.writeUInt16LE(0x0001, x);
  b.writeUInt16LE(24, x + 2);
  b.writeBigUInt64LE(BigInt(c.size), x + 4);
  b.writeBigUInt64LE(BigInt(c.size), x + 12);
  b.writeBigUInt64LE(BigInt(c.offset), x + 20);
  return b;
}

function endRecords(count: number, cdOffset: number, cdSize: number): Buffer {
  const b = Buffer.alloc(56 + 20 + 22);
  b.writeUInt32LE(0x06064b50, 0);
  b.writeBigUInt64LE(44n, 4);
  b.writeUInt16LE(MADE_BY, 12);
  b.writeUInt16LE(VERSION, 14);
  b.writeBigUInt64LE(BigInt(count), 24);
  b.writeBigUInt64LE(BigInt(count), 32);
  b.writeBigUInt64LE(BigInt(cdSize), 40);
  b.writeBigUInt64LE(BigInt(cdOffset), 48);
  b.writeUInt32LE(0x07064b50, 56);
  b.writeBigUInt64LE(BigInt(cdOffset + cdSize), 64);
  b.writeUInt32LE(1, 72);
  b.writeUInt32LE(0x06054b50, 76);
  b.writeUInt16LE(0xffff, 84);
  b.writeUInt16LE(0xffff, 86);
  b.writeUInt32LE(0xffffffff, 88);
  b.writeUInt32LE(0xffffffff, 92);
  return b;
}

/** Body of one entry; returns nothing for types a zip cannot hold (devices, FIFOs, sockets). */
async function* entryBody(fs: FileSystem, e: WalkEntry, c: Central): AsyncGenerator<Buffer> {
  if (e.stat.type === 'symlink') {
    const target = Buffer.from(await fs.readlink(e.guestPath), 'utf8');
    c.crc = crc32(target);
    c.size = target.length;
    yield target;
    return;
  }
  if (e.stat.type !== 'file') return;
  const handle = await fs.open(e.guestPath);
  for await (const piece of readFileRange(handle)) {
    c.crc = crc32(piece, c.crc);
    c.size += piece.length;
    yield piece;
  }
}

/** The ZIP64 stream of `root` (named `rootName` in the archive). */
export async function* zipStream(
  fs: FileSystem,
  root: string,
  rootName: string,
  onSkip?: (guestPath: string, reason: string) => void,
): AsyncGenerator<Buffer> {
  const entries: Central[] = [];
  let offset = 0;
  const send = (b: Buffer) => {
    offset += b.length;
    return b;
  };
  for await (const e of walkTree(fs, root, rootName, onSkip)) {
    const kind = e.stat.type === 'directory' ? S_IFDIR : e.stat.type === 'symlink' ? S_IFLNK : e.stat.type === 'file' ? S_IFREG : 0;
    if (kind === 0) continue;
    const name = Buffer.from(kind === S_IFDIR ? `${e.name}/` : e.name, 'utf8');
    const mode = kind === S_IFLNK ? 0o777 : e.stat.mode & 0o7777;
    const c: Central = { name, crc: 0, size: 0, offset, ...dosDateTime(e.stat.mtimeMs), external: ((kind | mode) << 16) | (kind === S_IFDIR ? 0x10 : 0) };
    yield send(localHeader(c));
    for await (const piece of entryBody(fs, e, c)) yield send(piece);
    yield send(dataDescriptor(c));
    entries.push(c);
  }
  const cdOffset = offset;
  for (const c of entries) yield send(centralHeader(c));
  yield endRecords(entries.length, cdOffset, offset - cdOffset);
}
