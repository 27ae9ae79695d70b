/**
 * Just enough tar (ustar, pax, GNU long names) to list an OVA's members and where their bytes are, without
 * unpacking anything. A member is then read through MemberSource, a window over the archive.
 */
import { DiskFormatError } from '../errors';
import type { ByteSource } from '../source';

const BLOCK = 512;
export const MAX_MEMBERS = 10000;
const MAX_EXTENDED_HEADER = 1024 * 1024;

export interface TarMember {
  name: string;
  /** Byte offset of the member's data in the archive. */
  offset: number;
  size: number;
  type: 'file' | 'directory' | 'other';
}

function parseNumber(field: Buffer, file: string, at: number): number {
  if (field[0] & 0x80) {
    // GNU base-256: big-endian two's complement, positive only here.
    if (field[0] !== 0x80) throw new DiskFormatError('negative or huge base-256 number', file, 'tar header', at);
    let v = 0;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i];
    if (!Number.isSafeInteger(v)) throw new DiskFormatError('number out of range', file, 'tar header', at);
    return v;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new DiskFormatError(`invalid octal number "${text}"`, file, 'tar header', at);
  return parseInt(text, 8);
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}

/** True when the block looks like a tar header (ustar magic and a matching checksum). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < BLOCK) return false;
  const magic = block.toString('latin1', 257, 262);
  if (magic !== 'ustar') return false;
  return headerChecksum(block) === parseInt(block.toString('latin1', 148, 156).replace(/[\0 ]+$/, '').trim() || 'x', 8);
}

function headerChecksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum;
}

function parsePax(data: Buffer, file: string, at: number): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(data.toString('latin1', pos, space), 10);
    if (!Number.isSafeInteger(len) || len <= 0 || pos + len > data.length) {
      throw new DiskFormatError('malformed pax record', file, 'tar pax header', at + pos);
    }
    const record = data.toString('utf8', space + 1, pos + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

/** Lists the members of a tar archive. */
export async function listTar(source: ByteSource): Promise<TarMember[]> {
  const members: TarMember[] = [];
  let pos = 0;
  let longName: string | undefined;
  let pax = new Map<string, string>();
  while (pos + BLOCK <= source.size) {
    const block = await source.read(pos, BLOCK, 'tar header');
    if (block.every((b) => b === 0)) break; // end of archive
    if (headerChecksum(block) !== parseNumber(block.subarray(148, 156), source.name, pos + 148)) {
      throw new DiskFormatError('header checksum mismatch', source.name, 'tar header', pos);
    }
    const size = parseNumber(block.subarray(124, 136), source.name, pos + 124);
    const type = String.fromCharCode(block[156] || 0x30);
    const dataAt = pos + BLOCK;
    if (dataAt + size > source.size) {
      throw new DiskFormatError(`member data (${size} bytes) runs past the end of the archive`, source.name, 'tar header', pos);
    }
    const next = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'L' || type === 'g') {
      if (size > MAX_EXTENDED_HEADER) throw new DiskFormatError(`${size}-byte extended header`, source.name, 'tar header', pos);
      const data = await source.read(dataAt, size, 'tar extended header');
      if (type === 'x') pax = parsePax(data, source.name, dataAt);
      else if (type === 'L') longName = cString(data);
      pos = next;
      continue;
    }
    const ustar = block.toString('latin1', 257, 262) === 'ustar';
    const prefix = ustar ? cString(block.subarray(345, 500)) : '';
    let name = longName ?? (prefix ? `${prefix}/${cString(block.subarray(0, 100))}` : cString(block.subarray(0, 100)));
    name = pax.get('path') ?? name;
    const paxSize = pax.get('size');
    const realSize = paxSize !== undefined ? Number(paxSize) : size;
    if (!Number.isSafeInteger(realSize) || realSize < 0 || dataAt + realSize > source.size) {
      throw new DiskFormatError(`invalid member size ${paxSize}`, source.name, 'tar pax header', pos);
    }
    members.push({
      name: name.replace(/^\.\//, ''),
      offset: dataAt,
      size: realSize,
      type: type === '0' || type === '7' ? 'file' : type === '5' ? 'directory' : 'other',
    });
    if (members.length > MAX_MEMBERS) throw new DiskFormatError(`more than ${MAX_MEMBERS} members`, source.name, 'tar', pos);
    longName = undefined;
    pax = new Map();
    pos = dataAt + Math.ceil(realSize / BLOCK) * BLOCK;
  }
  return members;
}

/** The bytes of one member, as a ByteSource of their own (offsets relative to the member). */
export class MemberSource implements ByteSource {
  readonly name: string;
  private closed = false;
  constructor(
    private readonly archive: ByteSource,
    private readonly member: TarMember,
    private readonly ownsArchive: boolean,
  ) {
    this.name = `${archive.name}/${member.name}`;
  }
  get size(): number {
    return this.member.size;
  }
  async read(offset: number, length: number, structure: string): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.member.size) {
      throw new DiskFormatError(`read ${offset}+${length} is outside the ${this.member.size}-byte member`, this.name, structure, offset);
    }
    return this.archive.read(this.member.offset + offset, length, structure);
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsArchive) await this.archive.close();
  }
}
