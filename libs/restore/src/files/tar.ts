/**
 * A guest folder (or file) as a PAX tar stream: UTF-8 names and precise times in PAX records, modes, owners,
 * symlinks as symlinks, files with holes as GNU sparse 1.0 entries (only their data is sent). No temp files.
 */
import type { FileSystem } from '@vmkeep/filesystems';
import { dataExtents, readDataExtents, readFileRange } from './file-stream';
import { walkTree, type WalkEntry } from './walk';

const BLOCK = 512;
const TYPE: Partial<Record<string, string>> = { file: '0', symlink: '2', directory: '5' };

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** One PAX record "LEN key=value\n", LEN counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + 1;
  while (bodyLen + String(len).length !== len) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

function pad(length: number): Buffer {
  const rest = length % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

interface Header {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  type: string;
  linkname?: string;
}

/** A ustar header block; fields too big or not ASCII are left to the PAX record before it. */
function ustar(h: Header): Buffer {
  const b = Buffer.alloc(BLOCK);
  const ascii = (s: string, max: number) => s.replace(/[^\x20-\x7e]/g, '_').slice(-max);
  b.write(ascii(h.name, 99), 0, 100, 'latin1');
  b.write(octal(h.mode & 0o7777, 8), 100, 8, 'latin1');
  b.write(octal(Math.min(h.uid, 0o7777777), 8), 108, 8, 'latin1');
  b.write(octal(Math.min(h.gid, 0o7777777), 8), 116, 8, 'latin1');
  b.write(octal(Math.min(h.size, 0o77777777777), 12), 124, 12, 'latin1');
  b.write(octal(Math.max(0, Math.min(Math.floor(h.mtimeMs / 1000), 0o77777777777)), 12), 136, 12, 'latin1');
  b.write('        ', 148, 8, 'latin1');
  b.write(h.type, 156, 1, 'latin1');
  if (h.linkname) b.write(ascii(h.linkname, 99), 157, 100, 'latin1');
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(octal(sum, 7) + ' ', 148, 8, 'latin1');
  return b;
}

function paxHeader(name: string, records: string[]): Buffer[] {
  const data = Buffer.from(records.join(''), 'utf8');
  const h = ustar({ name: `PaxHeaders/${name}`, mode: 0o644, uid: 0, gid: 0, size: data.length, mtimeMs: 0, type: 'x' });
  return [h, data, pad(data.length)];
}

function timeRecord(ms: number): string {
  return (ms / 1000).toFixed(3).replace(/\.?0+$/, '');
}

/** Header blocks and body of one entry. */
async function* tarEntry(fs: FileSystem, e: WalkEntry): AsyncGenerator<Buffer> {
  const type = TYPE[e.stat.type];
  if (!type) return; // devices, FIFOs and sockets carry no data worth restoring
  const base = { mode: e.stat.mode, uid: e.stat.uid, gid: e.stat.gid, mtimeMs: e.stat.mtimeMs, type };
  const records = [paxRecord('mtime', timeRecord(e.stat.mtimeMs)), paxRecord('uid', String(e.stat.uid)), paxRecord('gid', String(e.stat.gid))];
  if (type === '5') {
    yield* paxHeader(e.name, [paxRecord('path', e.name + '/'), ...records]);
    yield ustar({ ...base, name: e.name + '/', size: 0 });
    return;
  }
  if (type === '2') {
    const target = await fs.readlink(e.guestPath);
    yield* paxHeader(e.name, [paxRecord('path', e.name), paxRecord('linkpath', target), ...records]);
    yield ustar({ ...base, name: e.name, size: 0, linkname: target });
    return;
  }
  const handle = await fs.open(e.guestPath);
  const extents = dataExtents(await handle.extents(), handle.size);
  const stored = extents.reduce((n, x) => n + x.length, 0);
  if (stored === handle.size) {
    yield* paxHeader(e.name, [paxRecord('path', e.name), paxRecord('size', String(handle.size)), ...records]);
    yield ustar({ ...base, name: e.name, size: handle.size });
    yield* readFileRange(handle);
    yield pad(handle.size);
    return;
  }
  // GNU sparse 1.0: a map of (offset, length) lines before the data, then only the data extents.
  const map = [...extents];
  const last = map[map.length - 1];
  if (!last || last.offset + last.length < handle.size) map.push({ offset: handle.size, length: 0 });
  const mapText = [String(map.length), ...map.flatMap((x) => [String(x.offset), String(x.length)])].join('\n') + '\n';
  const mapBlock = Buffer.concat([Buffer.from(mapText, 'latin1'), pad(mapText.length)]);
  const size = mapBlock.length + stored;
  const slash = e.name.lastIndexOf('/');
  const fakeName = `${e.name.slice(0, slash + 1)}GNUSparseFile.0/${e.name.slice(slash + 1)}`;
  yield* paxHeader(e.name, [
    paxRecord('path', fakeName),
    paxRecord('GNU.sparse.major', '1'),
    paxRecord('GNU.sparse.minor', '0'),
    paxRecord('GNU.sparse.name', e.name),
    paxRecord('GNU.sparse.realsize', String(handle.size)),
    paxRecord('size', String(size)),
    ...records,
  ]);
  yield ustar({ ...base, name: fakeName, size });
  yield mapBlock;
  yield* readDataExtents(handle, extents);
  yield pad(stored);
}

/** The tar stream of `root` (named `rootName` in the archive), ending with the two zero blocks. */
export async function* tarStream(
  fs: FileSystem,
  root: string,
  rootName: string,
  onSkip?: (guestPath: string, reason: string) => void,
): AsyncGenerator<Buffer> {
  for await (const e of walkTree(fs, root, rootName, onSkip)) yield* tarEntry(fs, e);
  yield Buffer.alloc(BLOCK * 2);
}
