import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BufferDisk, type Disk, type Extent } from '@vmkeep/disk';
import { writeRaw } from './raw';

const CS = 256 * 1024;

/** A chunked source like a restore point: data in some chunks, fresh buffers per read, optional release(). */
function chunkedSource(chunks: string, withRelease: boolean) {
  const data = Buffer.alloc(chunks.length * CS - 1000); // a short last chunk
  const extents: Extent[] = [];
  [...chunks].forEach((c, i) => {
    if (c !== 'd') return;
    const end = Math.min(data.length, (i + 1) * CS);
    for (let at = i * CS; at < end; at++) data[at] = (at * 7 + i) % 251 || 1;
    data.fill(0, i * CS + 64 * 1024, i * CS + 128 * 1024); // an all-zero unit inside a data chunk
    extents.push({ offset: i * CS, length: end - i * CS });
  });
  const inner = new BufferDisk(data);
  const reads: Extent[] = [];
  const released: Buffer[] = [];
  const source: Disk & { chunkSize: number; release?: (b: Buffer) => void } = {
    size: data.length,
    chunkSize: CS,
    extents: async () => extents,
    close: async () => undefined,
    read: async (offset, length) => {
      reads.push({ offset, length });
      return Buffer.from(await inner.read(offset, length));
    },
  };
  if (withRelease) {
    source.release = (b) => {
      released.push(b);
      b.fill(0xaa); // whoever gets it back reuses it at once: must never reach the file
    };
  }
  return { data, source, reads, released };
}

describe('writeRaw', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-raw-spec-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a chunked source one whole chunk at a time, only its extents, and gives each buffer back once written', async () => {
    const { data, source, reads, released } = chunkedSource('dzddzzdd', true);
    const out = path.join(dir, 'a.raw');
    const result = await writeRaw(source, out);
    expect(readFileSync(out).equals(data)).toBe(true);
    expect(reads.map((r) => r.offset / CS)).toEqual([0, 2, 3, 6, 7]);
    expect(reads.every((r) => r.length === CS || r.offset + r.length === data.length)).toBe(true);
    expect(released).toHaveLength(reads.length);
    // Zero chunks and zero 64 KiB units were never written: holes.
    expect(result.bytesWritten).toBe(data.length - 3 * CS - 5 * 64 * 1024);
    expect(statSync(out).blocks * 512).toBeLessThan(data.length - 2 * CS);
  });

  it('gives nothing back to a source without release(), and still gives back what it read when the copy fails', async () => {
    const plain = chunkedSource('dd', false);
    const out = path.join(dir, 'b.raw');
    await writeRaw(plain.source, out);
    expect(readFileSync(out).equals(plain.data)).toBe(true);

    const failing = chunkedSource('dddd', true);
    const read = failing.source.read;
    failing.source.read = async (offset, length) => {
      if (offset >= 2 * CS) throw new Error('bad chunk');
      return read(offset, length);
    };
    await expect(writeRaw(failing.source, path.join(dir, 'c.raw'))).rejects.toThrow('bad chunk');
    expect(failing.released.length).toBeGreaterThan(0);
  });
});
