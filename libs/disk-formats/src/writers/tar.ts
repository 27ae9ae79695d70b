/**
 * ustar member headers (POSIX.1-1988) for OVA packages. Sizes that do not fit the 11 octal digits of ustar
 * (≥ 8 GiB) get a preceding pax extended header carrying the exact size.
 */
import { ImageWriteError } from './errors';

export const TAR_BLOCK = 512;
const MAX_USTAR_SIZE = 0o77777777777;

function octal(b: Buffer, value: number, offset: number, width: number): void {
  b.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'latin1');
}

function ustarHeader(name: string, size: number, type: '0' | 'x', mtime: number): Buffer {
  const b = Buffer.alloc(TAR_BLOCK);
  b.write(name, 0, 100, 'utf8');
  octal(b, 0o644, 100, 8);
  octal(b, 0, 108, 8); // uid
  octal(b, 0, 116, 8); // gid
  octal(b, Math.min(size, MAX_USTAR_SIZE), 124, 12);
  octal(b, mtime, 136, 12);
  b.write(type, 156, 1, 'latin1');
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  b.write('root', 265, 32, 'latin1');
  b.write('root', 297, 32, 'latin1');
  b.fill(0x20, 148, 156); // checksum is summed with its own field as spaces
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** One pax record: "<len> key=value\n" where <len> counts the whole record including its own digits. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body);
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** Bytes of zero padding after `size` bytes of member data. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The header block(s) of a regular file member. */
export function tarFileHeader(name: string, size: number, mtime = Math.floor(Date.now() / 1000)): Buffer {
  if (Buffer.byteLength(name) > 100 || name.includes('/') || name === '' || name.startsWith('.')) {
    throw new ImageWriteError(`"${name}" cannot be an OVA member name (1–100 bytes, no slash, no leading dot)`, name);
  }
  if (!Number.isSafeInteger(size) || size < 0) throw new ImageWriteError(`invalid member size ${size}`, name);
  const header = ustarHeader(name, size, '0', mtime);
  if (size <= MAX_USTAR_SIZE) return header;
  const pax = Buffer.from(paxRecord('size', String(size)));
  const paxHeader = ustarHeader(`PaxHeaders/${name}`.slice(0, 100), pax.length, 'x', mtime);
  return Buffer.concat([paxHeader, pax, Buffer.alloc(tarPadding(pax.length)), header]);
}

/** End of archive: two zero blocks. */
export const tarEnd = (): Buffer => Buffer.alloc(2 * TAR_BLOCK);
