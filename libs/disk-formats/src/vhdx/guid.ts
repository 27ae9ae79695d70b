/** VHDX GUIDs are stored as LE u32, LE u16, LE u16, then 8 bytes as is. Strings are lower case, no braces. */
export function readGuid(buf: Buffer, at: number): string {
  const hex = (b: Buffer) => b.toString('hex');
  const p1 = Buffer.from(buf.subarray(at, at + 4)).reverse();
  const p2 = Buffer.from(buf.subarray(at + 4, at + 6)).reverse();
  const p3 = Buffer.from(buf.subarray(at + 6, at + 8)).reverse();
  return `${hex(p1)}-${hex(p2)}-${hex(p3)}-${hex(buf.subarray(at + 8, at + 10))}-${hex(buf.subarray(at + 10, at + 16))}`;
}

export function writeGuid(guid: string, buf: Buffer, at: number): void {
  const h = normalizeGuid(guid).replace(/-/g, '');
  const bytes = Buffer.from(h, 'hex');
  if (bytes.length !== 16) throw new Error(`invalid GUID "${guid}"`);
  Buffer.from(bytes.subarray(0, 4)).reverse().copy(buf, at);
  Buffer.from(bytes.subarray(4, 6)).reverse().copy(buf, at + 4);
  Buffer.from(bytes.subarray(6, 8)).reverse().copy(buf, at + 6);
  bytes.copy(buf, at + 8, 8, 16);
}

export function normalizeGuid(guid: string): string {
  return guid.trim().replace(/^\{|\}$/g, '').toLowerCase();
}

export const ZERO_GUID = '00000000-0000-0000-0000-000000000000';
