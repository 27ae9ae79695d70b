/** LZNT1 decompression (NTFS compressed files): 4096-byte chunks of literals and back references. */
import { FileSystemError } from '../errors';

const CHUNK = 4096;

/**
 * Decompresses `src` into `out` (pre-zeroed; its length is the compression unit's size). Chunk i fills
 * out[i × 4096 …]; a chunk that yields fewer bytes leaves zeros. Damaged input is a FileSystemError at `offset`.
 */
export function lznt1Decompress(src: Buffer, out: Buffer, offset: number): void {
  const fail = (message: string, at: number) => new FileSystemError('ntfs', 'compressed data', message, offset + at);
  let at = 0;
  for (let chunk = 0; at + 2 <= src.length; chunk++) {
    const header = src.readUInt16LE(at);
    if (header === 0) return;
    const length = (header & 0x0fff) + 1;
    const dataStart = at + 2;
    const dataEnd = dataStart + length;
    if (dataEnd > src.length) throw fail('chunk runs past the end of the compression unit', at);
    const base = chunk * CHUNK;
    if (base >= out.length) throw fail('more chunks than the compression unit holds', at);
    const limit = Math.min(out.length, base + CHUNK);
    if ((header & 0x8000) === 0) {
      src.copy(out, base, dataStart, Math.min(dataEnd, dataStart + (limit - base)));
    } else {
      let pos = base;
      let p = dataStart;
      while (p < dataEnd) {
        const flags = src[p++];
        for (let bit = 0; bit < 8 && p < dataEnd; bit++) {
          if ((flags & (1 << bit)) === 0) {
            if (pos >= limit) throw fail('literal past the end of the chunk', p);
            out[pos++] = src[p++];
            continue;
          }
          if (p + 2 > dataEnd) throw fail('truncated back reference', p);
          const token = src.readUInt16LE(p);
          p += 2;
          const done = pos - base;
          if (done === 0) throw fail('back reference at the start of a chunk', p - 2);
          let lengthBits = 12;
          for (let i = done - 1; i >= 0x10; i >>= 1) lengthBits--;
          const count = (token & ((1 << lengthBits) - 1)) + 3;
          const back = (token >> lengthBits) + 1;
          if (back > done) throw fail(`back reference ${back} reaches before the chunk`, p - 2);
          if (pos + count > limit) throw fail('back reference past the end of the chunk', p - 2);
          for (let i = 0; i < count; i++, pos++) out[pos] = out[pos - back];
        }
      }
    }
    at = dataEnd;
  }
}
